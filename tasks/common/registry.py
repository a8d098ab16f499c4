"""The MLflow registry's view of the champion: the alias, the eval-set tag, and the lookup of the current version.

Its own small module because three places ask the registry the same question — the gate (is the new policy better
than the champion?), `align.init: champion` (is there one to start from?) and the chat page (which one to serve?)
— and none of them may import another stage to ask it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIAS = "champion"
# runs with equal digests were evaluated on the same held-out prompts and probe files (the gate compares only those)
EVAL_SET_TAG = "alignflow.eval_set"


@dataclass
class ChampionVersion:
    """A registered version under the alias, with what the gate compares: its run's metrics and eval-set digest."""


    version: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    eval_set: str | None = None


def current_champion(client, model_name: str) -> ChampionVersion | None:
    """The version under alias `champion` with the metrics and eval-set tag of the run it was registered from;
    None when the registered model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException as exc:
        # The stores answer "no such model" with RESOURCE_DOES_NOT_EXIST and "no such alias" with
        # INVALID_PARAMETER_VALUE; anything else (store down, bad credentials) must not read as "no champion".
        missing_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        missing_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc).lower()
        if missing_model or missing_alias:
            return None
        raise
    run = client.get_run(mv.run_id)
    return ChampionVersion(version=str(mv.version), run_id=mv.run_id, metrics=dict(run.data.metrics),
                    eval_set=run.data.tags.get(EVAL_SET_TAG))
