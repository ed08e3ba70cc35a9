"""What each task declares without torch: its name, its `task_params` schema, the metric tables report, and
where its implementation (a `Task` subclass, engine/tasks.py) lives. Checking a params file and rendering a
table read only these; a run imports the implementation (`get_task`).

Classification is declared here; other tasks in the modules of curriculab.evaluate.settings, which a lookup
imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from curriculab.config import Strict
from curriculab.registry import Registry, module_of


@dataclass(frozen=True)
class TaskSettings:
    name: str  # `task` in a run's settings
    impl: str  # "package.module:Class" of the Task subclass
    Params: type[BaseModel] = Strict  # validates `task_params`
    primary: str = "acc"  # the metric tables report by default
    higher_is_better: bool = True

    @property
    def module(self) -> str:
        return module_of(self.impl)


TASKS: Registry[TaskSettings] = Registry("task", ("curriculab.evaluate.settings",))


def declare_task(name: str, impl: str, Params: type[BaseModel] = Strict, primary: str = "acc",  # noqa: N803
                 higher_is_better: bool = True) -> TaskSettings:
    """Register a task's settings."""
    return TASKS.register(name, TaskSettings(name, impl, Params, primary, higher_is_better))


def task_names() -> list[str]:
    return TASKS.names()


CLASSIFICATION = declare_task("classification", "curriculab.engine.tasks:Task")
