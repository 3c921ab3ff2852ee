"""The stages that the one training loop can run, by name: stage -> task class."""

from __future__ import annotations

from zerohar.config import Config
from zerohar.train.base import BaseTask
from zerohar.train.motif_distance import MotifDistanceTask
from zerohar.train.pretrain_ssl import PretrainTask
from zerohar.train.relcon import RelConTask
from zerohar.train.stage1 import Stage1Task
from zerohar.train.stage2 import Stage2Task

#: stage name -> task. "supervised" is Stage II on every class (the upper bound), so it shares Stage II's task.
TASKS: dict[str, type[BaseTask]] = {
    "pretrain": PretrainTask,
    "stage1": Stage1Task,
    "stage2": Stage2Task,
    "supervised": Stage2Task,
}


#: stage "pretrain": `train.pretrain_method` -> task.
PRETRAIN_TASKS: dict[str, type[BaseTask]] = {
    "ssl": PretrainTask,
    "motif-distance": MotifDistanceTask,
    "relcon": RelConTask,
}


def make_task(cfg: Config, dist) -> BaseTask:
    """The task of `cfg.stage` (data loaded, model built or initialised, text embedded)."""
    if cfg.stage == "pretrain":
        return PRETRAIN_TASKS[cfg.train.pretrain_method](cfg, dist)
    return TASKS[cfg.stage](cfg, dist)
