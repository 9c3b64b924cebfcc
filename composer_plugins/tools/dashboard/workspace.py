"""A :class:`~composer_plugins.tools.dashboard.spec.DashboardSpec` as a W&B workspace (``wandb-workspaces``).

:func:`to_workspace` builds the ``wandb_workspaces.workspaces.Workspace``; :func:`save_workspace`
saves it to W&B (needs an API key and the network); :func:`write_spec` writes, instead, the spec
and the exact view ``save`` would upload (``Workspace._to_model()``, W&B's own serialisation) to
a JSON or YAML file, to review or test it offline.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from composer_plugins.tools.dashboard.spec import DashboardSpec, Panel, Section, panel_grid

log = logging.getLogger(__name__)

PANEL_WIDTH = 8   # W&B's grid is 24 units wide: 3 panels a row
PANEL_HEIGHT = 6
YAML_SUFFIXES = ('.yaml', '.yml')
DEFAULT_BASE_URL = 'https://api.wandb.ai'


def to_workspace(spec: DashboardSpec) -> Any:
    """The ``wandb_workspaces`` workspace of ``spec``: one open section per spec section, x axis = step (batch)."""
    import wandb_workspaces.workspaces as ws

    return ws.Workspace(
        entity=spec.entity, project=spec.project, name=spec.name,
        sections=[ws.Section(name=s.name, panels=_panels(s), is_open=True) for s in spec.sections],
        settings=ws.WorkspaceSettings(x_axis='Step'),
    )


def _panels(section: Section) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    panels = []
    for panel, (col, row) in zip(section.panels, panel_grid(section)):
        layout = wr.Layout(x=col * PANEL_WIDTH, y=row * PANEL_HEIGHT, w=PANEL_WIDTH, h=PANEL_HEIGHT)
        panels.append(_panel(wr, panel, layout))
    return panels


def _panel(wr: Any, panel: Panel, layout: Any) -> Any:
    if panel.kind == 'media':
        return wr.MediaBrowser(title=panel.title, media_keys=list(panel.keys), layout=layout)
    if panel.kind == 'table':
        (key,) = panel.keys
        return wr.WeavePanelSummaryTable(table_name=key, layout=layout)
    return wr.LinePlot(
        title=panel.title, x='Step', y=list(panel.keys), metric_regex=panel.regex,
        plot_type='stacked-area' if panel.kind == 'stacked_area' else None, layout=layout,
    )


def view_dict(spec: DashboardSpec) -> dict[str, Any]:
    """What :func:`save_workspace` would upload, as JSON-ready data (W&B's serialisation of the view)."""
    return to_workspace(spec)._to_model().model_dump(by_alias=True, mode='json', exclude_none=True)


def write_spec(spec: DashboardSpec, path: Path) -> Path:
    """Write ``{"spec": ..., "wandb_view": ...}`` as JSON, or YAML for a ``.yaml`` / ``.yml`` path."""
    data = {'spec': spec.to_dict(), 'wandb_view': view_dict(spec)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in YAML_SUFFIXES:
        import yaml
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding='utf-8')
    else:
        path.write_text(json.dumps(data, indent=1) + '\n', encoding='utf-8')
    log.info('Wrote the workspace spec to %s', path)
    return path


def save_workspace(spec: DashboardSpec) -> str:
    """Save the workspace to W&B; returns its URL."""
    workspace = to_workspace(spec).save()
    return str(workspace.url)


def wandb_is_offline() -> bool:
    """``WANDB_MODE`` is ``offline`` / ``disabled`` / ``dryrun``, or no API key is configured."""
    if os.environ.get('WANDB_MODE', '').lower() in ('offline', 'disabled', 'dryrun'):
        return True
    if os.environ.get('WANDB_API_KEY'):
        return False
    from requests.utils import get_netrc_auth  # where `wandb login` stores the key

    try:
        auth = get_netrc_auth(os.environ.get('WANDB_BASE_URL', DEFAULT_BASE_URL))
    except Exception:  # noqa: BLE001 - an unreadable netrc holds no key
        return True
    return not auth
