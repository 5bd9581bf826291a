"""papermill's own engine (nbclient), writing the executed notebook less often while it runs.

papermill writes the whole executed notebook (copied, validated and serialised again) when each
cell starts and again when it ends: 280 writes for 01-05, three quarters of the CPU the process
that runs the walkthrough spends. This engine writes it when the notebook starts, at most every
`WRITE_EVERY_S` seconds while its cells run, and always when it ends, whichever way it ends, so
the copy in build/notebooks still shows a long cell's progress to whoever watches it, and the
file left at the end is the one papermill's own engine leaves.
"""
from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

NAME = "mms-paced"
WRITE_EVERY_S = 2.0


class PacedManager(NotebookExecutionManager):
    """papermill's execution state, whose `save` skips writes that come sooner than WRITE_EVERY_S after
    the last one, except at the notebook's start and end."""

    _now_or_never = False

    def save(self, **kwargs: Any) -> None:
        if kwargs.get("nb") is not None:
            self.nb = kwargs["nb"]  # as papermill's own save takes a replaced notebook
        if self._now_or_never or (self.now() - self.last_save_time).total_seconds() >= WRITE_EVERY_S:
            super().save()

    def notebook_start(self, **kwargs: Any) -> None:
        self._forced(super().notebook_start, **kwargs)

    def notebook_complete(self, **kwargs: Any) -> None:
        self._forced(super().notebook_complete, **kwargs)

    def _forced(self, step, **kwargs: Any) -> None:
        self._now_or_never = True
        try:
            step(**kwargs)
        finally:
            self._now_or_never = False


class PacedEngine(NBClientEngine):
    """NBClientEngine with a PacedManager (papermill's `Engine.execute_notebook`, its manager swapped)."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                         autosave_cell_every=30, **kwargs):
        nb_man = PacedManager(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                              autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(NAME, PacedEngine)
