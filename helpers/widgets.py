"""The settings every notebook shares, as ipywidgets for people at a keyboard.

Explained in 00_cluster_prep. `helpers.notebook.start(..., interactive=True)` shows them; the
notebook's Context reads their *current* values, so changing a widget changes what the cells
run after it use. Nothing here waits for input: a headless run never blocks.
"""
from __future__ import annotations

from typing import Any, Mapping

from .constants import API_GROUPS
from .target import IDENTITIES

# Setting name -> (label, choices or None for free text). The order is the display order.
FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "target": ("target", ("local", "cluster")),
    "identity": ("identity", IDENTITIES),
    "api_group": ("API group", API_GROUPS),
    "namespace": ("namespace", None),
    "server_name": ("server name", None),
    "bucket": ("bucket", None),
}

HELP = ("Changing a value here changes what the cells below use: re-run them after a change. "
        "On a cluster, every notebook must use the same values.")


class SettingsWidgets:
    """One widget per setting; `values()` reads what they show now."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        import ipywidgets as w

        style = {"description_width": "110px"}
        layout = w.Layout(width="420px")
        self.widgets: dict[str, Any] = {}
        for key, (label, choices) in FIELDS.items():
            value = str(values.get(key) or "")
            if choices:
                options = list(choices) if value in choices or not value else [value, *choices]
                self.widgets[key] = w.Dropdown(options=options, value=value or options[0], description=label,
                                               style=style, layout=layout)
            else:
                self.widgets[key] = w.Text(value=value, description=label, style=style, layout=layout,
                                           continuous_update=True)
        note = w.HTML(f"<small>{HELP}</small>")
        self.box = w.VBox([w.HTML("<b>Settings</b>"), *self.widgets.values(), note])

    def values(self) -> dict[str, str]:
        """The widgets' current values, stripped of surrounding spaces."""
        return {key: str(widget.value).strip() for key, widget in self.widgets.items()}

    def set(self, **values: str) -> None:
        """Change widget values from code (what a person does by typing)."""
        for key, value in values.items():
            self.widgets[key].value = value

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def settings_widgets(values: Mapping[str, Any]) -> SettingsWidgets:
    """Widgets for `target`, `identity`, `api_group`, `namespace`, `server_name` and `bucket`, starting at `values`."""
    return SettingsWidgets(values)
