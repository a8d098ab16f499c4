"""PPO for language models, written here because TRL removed its PPOTrainer in 2026 (issue 4). This package holds
the algorithm's pieces as plain functions over tensors (`core.py`: KL control, per-token rewards, GAE, masked
statistics, the clipped losses), so each can be checked against a hand-computed example before the trainer uses
them. Follows the checklist in docs/methods.md (OpenAI lm-human-preferences; "The N implementation details of RLHF
with PPO", Huang et al. 2022).

Online RL lives here as a whole: our PPO (core.py, trainer.py, stage.py) and TRL's RLOO and GRPO (trl_online.py)
share only online.py (inputs, score scale, step history and curves); the log-probs PPO and evaluate share are in
tasks/common/logprobs.py."""
