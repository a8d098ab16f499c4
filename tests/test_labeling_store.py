"""The labelling store, queue, agreement statistics and export (no server): tiny pairs files built in tmp."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from alignflow.labeling.export import export, export_rows, label_metrics
from alignflow.labeling.queue import import_queue, next_pair, progress
from alignflow.labeling.store import LabelError, LabelStore
from tasks.common.params import Params
from tasks.preferences.agreement import (
    by_item,
    cohen_kappa,
    fleiss_from_labels,
    fleiss_kappa,
    human_ai_agreement,
    majority,
    mean_cohen,
)

XSS = '<script>window.__xss = 1; alert("xss")</script> & <b>bold</b>'
WORDS = "good bad fine dull great awful lovely boring superb weak".split()


def write_preferences(root: Path, n: int = 6, xss: bool = False) -> Path:
    """A collect_preferences output dir: judgments.jsonl (p_a spread around ½) + train/eval/samples with the prompts."""
    root.mkdir(parents=True, exist_ok=True)
    judgments, train, samples = [], [], []
    for i in range(n):
        pid = f"train-{i:04d}"
        prompt = [{"role": "user", "content": f"Continue this movie review number {i}:"}]
        a = f"The film was {WORDS[i % 10]} and the cast {WORDS[(i + 3) % 10]} ({i})."
        b = XSS if xss and i == 0 else f"It felt {WORDS[(i + 5) % 10]}, the plot {WORDS[(i + 7) % 10]} ({i})."
        p_a = [0.9, 0.55, 0.2, 0.5, 0.7, 0.45, 1.0, 0.0][i % 8]
        judgments.append({"id": pid, "source": "ai", "labeller": "judge", "p_a": p_a, "judge": "hf:tiny", "a": a,
                          "b": b})
        train.append({"id": pid, "prompt": prompt, "chosen": [{"role": "assistant", "content": a}],
                      "rejected": [{"role": "assistant", "content": b}], "label": max(p_a, 1 - p_a)})
        samples.append({"id": f"{pid}-0", "prompt_id": pid, "prompt": prompt,
                        "completion": [{"role": "assistant", "content": a}]})
    # one pair only samples.jsonl knows the prompt of (a disjoint pair), one human pair, one with an empty side
    judgments.append({"id": "train-0000-p1", "source": "ai", "p_a": 0.52, "judge": "hf:tiny", "a": "yes it was",
                      "b": "no it was not"})
    judgments.append({"id": "human-x", "source": "human", "p_a": 1.0, "a": "x", "b": "y"})
    judgments.append({"id": "train-0001-p1", "source": "ai", "p_a": 0.5, "a": "", "b": "text"})
    for name, rows in (("judgments.jsonl", judgments), ("train.jsonl", train), ("samples.jsonl", samples)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "eval.jsonl").write_text("", encoding="utf-8")
    return root


def label_params(tmp_path: Path, **label) -> Params:
    """Default params with every path in tmp (no tokenizer: models/base does not exist there)."""
    return Params.model_validate({
        "paths": {"preferences": str(tmp_path / "prefs"), "base_model": str(tmp_path / "no-model"),
                  "reports": str(tmp_path / "reports")},
        "label": {"db": str(tmp_path / "labels.sqlite"), "export": str(tmp_path / "human.jsonl"), **label},
    })


@pytest.fixture
def store(tmp_path) -> LabelStore:
    s = LabelStore(tmp_path / "labels.sqlite")
    import_queue(s, write_preferences(tmp_path / "prefs"))
    for name in ("ann", "bob", "cy"):
        s.add_labeller(name)
    return s


def drain(store: LabelStore, name: str, overlap: int, choice: str = "first") -> list[str]:
    """Label everything left for `name`; the pair ids in the order they were shown."""
    seen = []
    while (a := next_pair(store, name, overlap)) is not None:
        seen.append(a.pair.id)
        store.submit(name, a.nonce, choice)
    return seen


# Queue ----------------------------------------------------------------------------------------------------------


def test_import_is_idempotent_and_skips_unusable_pairs(tmp_path):
    prefs = write_preferences(tmp_path / "prefs")
    s = LabelStore(tmp_path / "db.sqlite")
    counts = import_queue(s, prefs)
    assert counts == {"found": 7, "imported": 7, "new": 7, "skipped_human": 1, "skipped_no_prompt": 0,
                      "skipped_empty_or_same": 1}
    assert import_queue(s, prefs)["new"] == 0
    assert len(s.pairs()) == 7
    by_source = {p.source_id: p for p in s.pairs().values()}
    assert by_source["train-0000-p1"].prompt == by_source["train-0000"].prompt  # prompt found via samples.jsonl
    # collect_preferences re-runs reuse ids for new samples: a changed text is a new pair, never the old one's labels
    judgments = [json.loads(line) for line in (prefs / "judgments.jsonl").read_text().splitlines()]
    judgments[0]["a"] = "a completely new sample"
    (prefs / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgments))
    assert import_queue(s, prefs)["new"] == 1
    assert sum(p.source_id == "train-0000" for p in s.pairs().values()) == 2


def test_active_queue_puts_the_least_certain_pairs_first(store):
    order = drain(store, "ann", overlap=1)
    p = {pid: store.pairs()[pid] for pid in order}
    assert [p[i].ai_p for i in order] == [0.5, 0.52, 0.55, 0.45, 0.7, 0.2, 0.9]
    assert [p[i].source_id for i in order][2:4] == ["train-0001", "train-0005"]  # equal |p − ½|: by id


def test_all_queue_and_max_pairs(tmp_path):
    prefs = write_preferences(tmp_path / "prefs")
    s = LabelStore(tmp_path / "all.sqlite")
    import_queue(s, prefs, queue="all")
    s.add_labeller("ann")
    order = []
    while (a := next_pair(s, "ann", 1, order="all")) is not None:
        order.append(a.pair.source_id)
        s.submit("ann", a.nonce, "skip")
    assert order[:3] == ["train-0000", "train-0001", "train-0002"]
    s2 = LabelStore(tmp_path / "max.sqlite")
    import_queue(s2, prefs, queue="active", max_pairs=2)
    assert sorted(p.ai_p for p in s2.pairs().values()) == [0.5, 0.52]


def test_never_the_same_pair_twice_and_overlap(store):
    seen = {name: drain(store, name, overlap=2) for name in ("ann", "bob", "cy")}
    for name, ids in seen.items():
        assert len(ids) == len(set(ids)), name
    assert len(seen["ann"]) == len(seen["bob"]) == 7 and seen["cy"] == []  # k = 2 places, both taken
    per_pair = {}
    for lab in store.labels():
        per_pair[lab.pair_id] = per_pair.get(lab.pair_id, 0) + 1
    assert set(per_pair.values()) == {2}
    assert progress(store, "cy", 2) == {"labelled": 0, "left": 0}
    assert progress(store, "ann", 2) == {"labelled": 7, "left": 0}


def test_skips_do_not_count_towards_overlap_and_open_assignments_come_back(store):
    first = next_pair(store, "ann", overlap=1)
    assert next_pair(store, "ann", overlap=1).nonce == first.nonce  # a reload shows the open assignment again
    assert progress(store, "ann", 1)["left"] == 7
    # ann's open assignment holds the only place of that pair: bob gets another one ...
    assert next_pair(store, "bob", overlap=1).pair.id != first.pair.id
    # ... until the lease runs out
    store.submit("ann", first.nonce, "skip")
    assert next_pair(store, "cy", overlap=1, lease_s=0).pair.id == first.pair.id  # a skip leaves the place open
    assert next_pair(store, "ann", overlap=1).pair.id != first.pair.id  # ... but never for ann again


def test_random_order_is_recorded_and_mapped_back(store):
    orders = set()
    for name in [f"l{i}" for i in range(12)]:
        store.add_labeller(name)
        a = next_pair(store, name, overlap=20)
        assert a.shown == ((a.pair.b, a.pair.a) if a.swapped else (a.pair.a, a.pair.b))
        label = store.submit(name, a.nonce, "first")
        assert label.choice == ("b" if a.swapped else "a") and label.swapped == a.swapped
        orders.add(a.swapped)
    assert orders == {True, False}  # 12 fair coin flips, all equal with probability 2⁻¹¹


# Store ----------------------------------------------------------------------------------------------------------


def test_tokens_are_stored_hashed(tmp_path, store):
    token = store.add_labeller("dee")
    assert store.authenticate(token) == "dee"
    assert store.authenticate(token + "x") is None and store.authenticate("") is None
    with pytest.raises(LabelError, match="already exists"):
        store.add_labeller("dee")
    with pytest.raises(LabelError, match="labeller name"):
        store.add_labeller("<script>")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("labels.sqlite*"))
    assert token.encode() not in raw


def test_submit_is_idempotent_and_a_second_label_is_refused(store):
    a = next_pair(store, "ann", overlap=2)
    first = store.submit("ann", a.nonce, "tie", "  hard one  ")
    assert first.choice == "tie" and first.comment == "hard one"
    assert store.submit("ann", a.nonce, "first", "changed my mind") == first  # a resent form: the stored label
    assert len(store.labels()) == 1
    with pytest.raises(LabelError, match="unknown assignment"):
        store.submit("bob", a.nonce, "first")  # another labeller cannot use ann's nonce
    with pytest.raises(LabelError, match="unknown assignment"):
        store.submit("ann", "made-up", "first")
    with pytest.raises(LabelError, match="choice"):
        store.submit("ann", a.nonce, "left")
    # a second, different label for the same (pair, labeller) — forged straight into the db — is refused by SQLite
    with store.transaction() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO labels (pair_id, labeller, choice, swapped, comment, nonce, created) "
                     "VALUES (?, 'ann', 'a', 0, '', 'other-nonce', 'now')", (a.pair.id,))


def test_secret_from_env_or_kept_in_the_db(tmp_path, monkeypatch):
    s = LabelStore(tmp_path / "s.sqlite")
    monkeypatch.delenv("AF_TEST_SECRET", raising=False)
    generated = s.secret("AF_TEST_SECRET")
    assert len(generated) > 30 and LabelStore(tmp_path / "s.sqlite").secret("AF_TEST_SECRET") == generated
    monkeypatch.setenv("AF_TEST_SECRET", "from-env")
    assert s.secret("AF_TEST_SECRET") == "from-env"


def test_two_labellers_submitting_at_once_lose_and_duplicate_nothing(tmp_path):
    s = LabelStore(tmp_path / "c.sqlite")
    import_queue(s, write_preferences(tmp_path / "prefs", n=30))
    s.add_labeller("ann"), s.add_labeller("bob")
    start, errors, submitted = threading.Barrier(2), [], {"ann": [], "bob": []}

    def work(name: str) -> None:
        try:
            start.wait()
            while (a := next_pair(s, name, overlap=2)) is not None:
                label = s.submit(name, a.nonce, "second")
                assert s.submit(name, a.nonce, "second") == label  # an immediate resend changes nothing
                submitted[name].append(a.pair.id)
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in submitted]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    labels = s.labels()
    assert len(labels) == len(submitted["ann"]) + len(submitted["bob"]) == 2 * 31
    assert len({(lab.pair_id, lab.labeller) for lab in labels}) == len(labels)
    assert {(lab.pair_id, lab.labeller) for lab in labels} == {(p, n) for n, ids in submitted.items() for p in ids}


# Agreement ------------------------------------------------------------------------------------------------------


def test_fleiss_kappa_worked_example():
    """Fleiss (1971) / Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories. P̄ = 0.378, P̄_e = 0.213,
    κ = (0.378 − 0.213) / (1 − 0.213) = 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert fleiss_kappa([[2, 0], [0, 2]]) == 1.0
    assert math.isnan(fleiss_kappa([[1, 0]]))


def test_cohen_kappa_worked_example():
    """Wikipedia "Cohen's kappa": 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15. p_o = 35/50 = 0.7;
    p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 − 0.5) / (1 − 0.5) = 0.4."""
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))


def test_mean_cohen_majority_and_ai_agreement():
    labels = [(f"p{i}", r, c) for i in range(6) for r, c in (("ann", "a"), ("bob", "a" if i < 4 else "b"))]
    labels += [("p6", "ann", "skip"), ("p6", "cy", "b"), ("p7", "ann", "tie"), ("p7", "bob", "tie")]
    items = by_item(labels)
    assert "ann" not in items["p6"]  # skips are not labels
    # ann/bob share p0..p5 and p7: ann a×6 + tie; bob a×4, b×2, tie → p_o = 5/7, p_e = (6·4 + 1·1)/49 = 25/49
    kappa, n = mean_cohen(items, min_shared=5)
    assert n == 1 and kappa == pytest.approx((5 / 7 - 25 / 49) / (1 - 25 / 49))
    assert mean_cohen(items, min_shared=8) == (pytest.approx(math.nan, nan_ok=True), 0)
    assert majority(["a", "a", "b"]) == "a" and majority(["a", "b"]) is None and majority(["skip"]) is None
    # majority human side vs the AI's: p0..p3 a (AI a: hit), p4/p5 no majority, p6 b (AI says a: miss), p7 tie
    share, compared = human_ai_agreement(items, {f"p{i}": 0.8 for i in range(8)})
    assert (share, compared) == (pytest.approx(4 / 5), 5)
    assert fleiss_from_labels({"x": {"r1": "a", "r2": "a"}, "y": {"r1": "b", "r2": "b"}}) == 1.0


# Export ---------------------------------------------------------------------------------------------------------


def test_export_rows_and_metrics(tmp_path, store):
    """Two labellers on every pair: ann picks the side shown first, bob says tie."""
    params = label_params(tmp_path)
    drain(store, "ann", overlap=2, choice="first")
    drain(store, "bob", overlap=2, choice="tie")
    metrics = export(store, params.label.export)
    rows = [json.loads(line) for line in Path(params.label.export).read_text().splitlines()]
    assert len(rows) == 14 and {r["labeller"] for r in rows} == {"ann", "bob"}
    assert all(r["source"] == "human" for r in rows) and len({r["id"] for r in rows}) == 14
    assert sorted(r["label"] for r in rows) == [0.5] * 7 + [1.0] * 7
    by_label, pairs = {(lab.pair_id, lab.labeller): lab for lab in store.labels()}, store.pairs()
    for r in rows:
        pair_id = r["id"].removesuffix(f"-{r['labeller']}")
        lab, pair = by_label[(pair_id, r["labeller"])], pairs[pair_id]
        assert r["prompt"] == pair.prompt
        assert (r["chosen"][0]["content"], r["rejected"][0]["content"]) == \
            ((pair.b, pair.a) if lab.choice == "b" else (pair.a, pair.b))
    assert metrics["human/labels"] == 14 and metrics["human/pairs"] == 7 and metrics["human/labellers"] == 2
    assert metrics["human/fleiss_kappa"] < 0  # ann never says tie, bob always does
    assert metrics["human/cohen_kappa"] == 0.0  # bob's labels are constant: p_o = p_e
    assert metrics["human/ai_agreement_pairs"] == 0 and "human/ai_agreement" not in metrics  # no majority side
    assert label_metrics(store) == metrics
    before = Path(params.label.export).read_bytes()
    export(store, params.label.export)
    assert Path(params.label.export).read_bytes() == before  # no new labels: the DVC-tracked file is unchanged


def _two_labellers(store: LabelStore, ann: str, bob: str, overlap: int) -> None:
    drain(store, "ann", overlap, ann)
    drain(store, "bob", overlap, bob)


def _pipeline_reads(params: Params) -> list[dict]:
    from tasks.collect_preferences import _load_human
    from tasks.common.validation import load_and_validate

    assert len(load_and_validate("preference", [params.label.export], params)) == len(
        Path(params.label.export).read_text().splitlines())
    return _load_human(params, Path(params.label.export))


def test_the_pipeline_reads_the_export(tmp_path, store):
    """One labeller per pair (overlap 1): the file passes the preference suite and collect_preferences' human
    source keeps every label and labeller id."""
    params = label_params(tmp_path)
    next_pair(store, "bob", 1)  # bob holds one pair, so ann leaves it to him
    _two_labellers(store, "second", "tie", overlap=1)
    export(store, params.label.export)
    human = _pipeline_reads(params)
    assert sorted((x["labeller"], x["judgment"].p_a) for x in human) == [("ann", 1.0)] * 6 + [("bob", 0.5)]


def test_agreeing_labellers_pass_the_preference_suite(tmp_path, store):
    params = label_params(tmp_path)
    for name in ("ann", "bob"):
        while (a := next_pair(store, name, 2)) is not None:
            store.submit(name, a.nonce, "second" if a.swapped else "first")  # both choose the original a
    export(store, params.label.export)
    human = _pipeline_reads(params)
    assert sorted(x["labeller"] for x in human) == ["ann"] * 7 + ["bob"] * 7
    assert {x["judgment"].p_a for x in human} == {1.0}  # every label kept as a strict preference, none as a tie
    by_pair: dict[str, set[str]] = {}
    for x in human:
        key = json.dumps([x["pair"]["prompt"], x["pair"]["a"], x["pair"]["b"]], sort_keys=True)
        by_pair.setdefault(key, set()).add(x["labeller"])
    assert len(by_pair) == 7 and all(who == {"ann", "bob"} for who in by_pair.values())  # overlap 2: both saw each


def test_disagreeing_labellers_keep_their_labels_in_collect_preferences(tmp_path, store):
    params = label_params(tmp_path)
    _two_labellers(store, "first", "tie", overlap=2)
    export(store, params.label.export)
    human = _pipeline_reads(params)
    assert sorted(x["judgment"].p_a for x in human) == [0.5] * 7 + [1.0] * 7


def test_skips_are_not_exported(store):
    drain(store, "ann", overlap=1, choice="skip")
    assert export_rows(store) == [] and label_metrics(store)["human/skips"] == 7
