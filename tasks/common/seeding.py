"""One seed for every random generator a stage touches (Python, NumPy, torch, transformers).

Its own module, apart from modeling.py, so that a stage which only needs a seed (prepare_model) does not import —
and, in dvc.yaml, depend on — the model-loading and sampling code.
"""

from __future__ import annotations

import random


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)
