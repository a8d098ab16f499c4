"""Two processes train the same model as one: align (dpo, ppo) under `accelerate launch` with
configs/accelerate/cpu_2proc.yaml (2 CPU processes, gloo) against the same stage run in this process, with the same
global batch (the per-process batch halved for 2 processes). The same again as 2 nodes × 1 process: two
`accelerate launch --num_machines 2 --machine_rank 0|1` commands rendezvousing over loopback (static rendezvous at
node 0's address, what configs/accelerate/ddp_multinode.yaml does across real machines), both in the same project
directory as nodes on a shared filesystem would be.

Why the results agree: DPO's loss is a mean over pairs, the sampler hands the two ranks the two halves of the
single process's batch and DDP averages their gradients, so the gradient is the same mean. PPO (tasks/ppo/trainer.py)
gathers every rollout shard so each rank computes rewards, GAE, whitening and the batch KL on the whole batch, and
sums token-share-weighted minibatch gradients; generation is greedy here (top_k=1) so both layouts sample the same
responses whatever their RNG streams.

Tolerance: what remains is float summation order — forwards over 2 rows instead of 4 (or 4 instead of 8) padded
to a shorter length, and a gradient summed from two partial means: ~1e-7 relative each in fp32, which Adam's
division by each component's running scale can enlarge a little for near-zero components. The learned weights are
compared by the relative L2 distance of the LoRA B matrices (B starts at zero: it is what training wrote), all
weights elementwise, and the final train loss. Measured here: DPO relative L2 1.5e-6, max |Δ| 3e-6, loss equal;
PPO relative L2 7.5e-7, max |Δ| 3e-8, loss |Δ| 7e-8 (PPO's loss is a small difference of O(1) terms, so it gets an
absolute bound). Allowed: 1e-4 relative on the weights, 1e-5 relative + 1e-6 absolute on the loss — 15-100x the
measured noise. A real layout bug is far outside: without the gradient sum over ranks PPO's B differs by 0.55
relative, with per-rank token means summed instead of token-share-weighted by 0.027 (both measured).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_params, write_params
from tests.test_collect_preferences import build_upstream, write_pairs

CONFIG = REPO / "configs" / "accelerate" / "cpu_2proc.yaml"
REL_TOL_WEIGHTS = 1e-4
REL_TOL_LOSS, ABS_TOL_LOSS = 1e-5, 1e-6


def _launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ALIGNFLOW_PARENT_RUN_ID")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), OMP_NUM_THREADS="1")
    return env


def launch_two(root: Path) -> None:
    """`accelerate launch --config_file cpu_2proc.yaml -m tasks.align` in the project (what a user runs)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "-m", "tasks.align"]
    proc = subprocess.run(cmd, cwd=root, env=_launch_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def launch_two_nodes(root: Path) -> None:
    """Node 0 and node 1, one process each: the multi-node command of README "Several GPUs or machines", with
    127.0.0.1 as node 0's address."""
    from deploy.services import free_port

    port = str(free_port())
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--num_machines", "2",
               "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", port, "-m", "tasks.align"]
        procs.append(subprocess.Popen(cmd, cwd=root, env=_launch_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"node {rank} exited {p.returncode}:\n{out[-6000:]}"


LAUNCHERS = {"2 processes": launch_two, "2 nodes": launch_two_nodes}


def learned(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


def assert_same_training(one: dict, two: dict, loss_one: float, loss_two: float) -> None:
    import torch

    assert one.keys() == two.keys()
    b_keys = [k for k in one if "lora_B" in k]
    diff = torch.sqrt(sum(((one[k] - two[k]) ** 2).sum() for k in b_keys))
    size = torch.sqrt(sum((one[k] ** 2).sum() for k in b_keys))
    assert size > 0, "training did not move the adapter: the comparison would be empty"
    assert float(diff / size) < REL_TOL_WEIGHTS, f"relative L2 of the learned weights {float(diff / size):.2e}"
    for k in one:  # A starts from the same seeded init: compare it too
        torch.testing.assert_close(two[k], one[k], rtol=REL_TOL_WEIGHTS, atol=REL_TOL_WEIGHTS * float(size))
    assert loss_two == pytest.approx(loss_one, rel=REL_TOL_LOSS, abs=ABS_TOL_LOSS)


def run_both(project: Path, raw: dict, per_process, loss_key: str, launch=launch_two) -> tuple[dict, dict, float, float]:
    """2 processes (`launch`) with `per_process(2)` settings, then 1 process with `per_process(1)`; fresh checkpoints
    each. Returns both adapters and both final train losses (metrics/align.json `loss_key`)."""
    import shutil

    from tasks.align import run_align
    from tasks.common.io import read_json
    from tasks.common.params import deep_merge, load_params

    write_params(project, deep_merge(raw, per_process(2)))
    launch(project)
    two, loss_two = learned(project / "models/policy"), read_json(project / "metrics/align.json")[loss_key]
    assert _align_runs(project) == 1  # rank 0 alone opened an MLflow run

    shutil.rmtree(project / "checkpoints/align")
    write_params(project, deep_merge(raw, per_process(1)))
    metrics = run_align(load_params())
    return learned(project / "models/policy"), two, metrics[loss_key], loss_two


def _align_runs(project: Path) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return sum(r.info.run_name == "align" for r in runs)


@pytest.mark.parametrize("layout", LAUNCHERS)
def test_dpo_two_processes_equal_one(project, tiny_model_dir, layout):
    build_upstream(project, tiny_model_dir)
    write_pairs(project)
    raw = tiny_params(tiny_model_dir, align={"method": "dpo", "trainer": {"max_steps": 2, "learning_rate": 1e-2}})

    def per_process(n: int) -> dict:  # global batch 4 pairs per step, eval 4 pairs
        return {"align": {"trainer": {"per_device_train_batch_size": 4 // n, "per_device_eval_batch_size": 4 // n}}}

    one, two, loss_one, loss_two = run_both(project, raw, per_process, "train/loss", LAUNCHERS[layout])
    assert_same_training(one, two, loss_one, loss_two)


@pytest.mark.parametrize("layout", LAUNCHERS)
def test_ppo_two_processes_equal_one(project, tiny_model_dir, layout):
    from tasks.common.params import load_params
    from tasks.train_reward import run_train_reward

    build_upstream(project, tiny_model_dir)
    write_pairs(project)
    run_train_reward(load_params())
    ppo = {"steps": 2, "rollout_batch_size": 8, "mini_batch_size": 4, "learning_rate": 1e-3,
           "missing_eos_penalty": None,  # greedy tiny-model responses never stop in 6 tokens: keep the RM's scores
           "generation": {"max_new_tokens": 6, "top_k": 1}}  # greedy: the same responses in both layouts
    raw = tiny_params(tiny_model_dir, align={"method": "ppo", "ppo": ppo})

    # PPO splits the global batch itself
    one, two, loss_one, loss_two = run_both(project, raw, lambda n: {}, "train/loss/total", LAUNCHERS[layout])
    assert_same_training(one, two, loss_one, loss_two)
    curves = (project / "plots/align.csv").read_text().splitlines()
    assert len(curves) == 3  # header + 2 steps, written once by rank 0


def test_ppo_refuses_batches_the_processes_cannot_share():
    from tasks.ppo.trainer import uneven_split

    assert uneven_split(8, 4, 2) == {}
    assert uneven_split(8, 3, 2) == {"mini_batch_size": 3}  # and 8 % 3 = 2 is even
    assert uneven_split(6, 4, 2) == {}  # minibatches of 4 and 2
    assert uneven_split(9, 4, 3) == {"mini_batch_size": 4, "rollout_batch_size % mini_batch_size": 1}
