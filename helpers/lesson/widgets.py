"""The settings every notebook shares, as ipywidgets for people at a keyboard.

Explained in 00_cluster_prep. `helpers.lesson.notebook.start(..., interactive=True)` shows them; the
notebook's Context reads their *current* values, so changing a widget changes what the cells
run after it use. "Save for every notebook" writes them to the settings file
(`helpers.core.settings.save`), which the next notebooks read. Nothing here waits for input: a
headless run never blocks.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Optional

from helpers.clients.target import IDENTITIES
from helpers.core import i18n, settings
from helpers.core.constants import API_GROUPS
from helpers.core.errors import SetupError
from helpers.core.i18n import _

# Setting name -> choices, or None for free text. The order is the display order; each widget is
# labelled with the setting's own name (what the settings file, MMS_* and the parameters cell call it).
FIELDS: dict[str, tuple[str, ...] | None] = {
    "target": ("local", "cluster"),
    "identity": IDENTITIES,
    "api_group": API_GROUPS,
    "namespace": None,
    "server_name": None,
    "bucket": None,
    "preset": tuple(settings.PRESETS),
    "language": tuple(i18n.LANGUAGES),
}


def help_text() -> str:
    """The line under the widgets, in the learner's language (HTML)."""
    return _("Changing a value here changes what the cells below use: re-run them after a change. "
             "<b>Save for every notebook</b> writes them to the settings file the next notebooks read "
             "(a notebook's own parameter or an MMS_* variable still wins).")


class SettingsWidgets:
    """One widget per setting, and a button that saves them; `values()` reads what they show now."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        import ipywidgets as w

        style = {"description_width": "110px"}
        layout = w.Layout(width="420px")
        self.widgets: dict[str, Any] = {}
        for key, choices in FIELDS.items():
            label = key
            value = str(values.get(key) or "")
            if choices:
                options = list(choices) if value in choices or not value else [value, *choices]
                self.widgets[key] = w.Dropdown(options=options, value=value or options[0], description=label,
                                               style=style, layout=layout)
            else:
                self.widgets[key] = w.Text(value=value, description=label, style=style, layout=layout,
                                           continuous_update=True)
        self.save_button = w.Button(description=_("Save for every notebook"), icon="save",
                                    tooltip=_("write these settings to the settings file every notebook reads"))
        self.saved = w.HTML("")
        self.save_button.on_click(lambda _button: self.save())
        note = w.HTML(f"<small>{help_text()}</small>")
        title = w.HTML("<b>{}</b>".format(html.escape(_("Settings"))))
        self.box = w.VBox([title, *self.widgets.values(), w.HBox([self.save_button, self.saved]),
                           note])

    def values(self) -> dict[str, str]:
        """The widgets' current values, stripped of surrounding spaces."""
        return {key: str(widget.value).strip() for key, widget in self.widgets.items()}

    def set(self, **values: str) -> None:
        """Change widget values from code (what a person does by typing)."""
        for key, value in values.items():
            self.widgets[key].value = value

    def save(self) -> Optional[Path]:
        """Write the settings file's keys (all but `identity`) as shown now and say where; on a bad value,
        say why and how to fix it and write nothing. Returns the file's path, or None."""
        shown = {key: value for key, value in self.values().items() if key in settings.KEYS}
        try:
            path = settings.save(shown)
        except SetupError as exc:
            self.saved.value = ("<span style='color:#b00020'>{}</span><br><b>{}</b> {}".format(
                _("not saved: {cause}").format(cause=html.escape(exc.cause)), html.escape(_("fix:")),
                html.escape(exc.fix)))
            return None
        self.saved.value = _("saved to {path}: the next notebooks read it").format(
            path=f"<code>{html.escape(str(path))}</code>")
        return path

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def settings_widgets(values: Mapping[str, Any]) -> SettingsWidgets:
    """Widgets for `target`, `identity`, `api_group`, `namespace`, `server_name`, `bucket` and `preset`,
    starting at `values`, with a button that saves them for every notebook."""
    return SettingsWidgets(values)
