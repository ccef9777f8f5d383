"""Write NapCat's OneBot config with the access token taken from the environment.

NapCat reads its network settings from JSON files in /app/napcat/config and cannot read
environment variables. docker-compose.yml runs this once before NapCat starts (the
`napcat-config` service), so the token has one source: ONEBOT_TOKEN in .env, which the app
receives as HELPDESK_ONEBOT__ACCESS_TOKEN.

- onebot11.json is rewritten from the template (deploy/napcat/onebot11.json) with the token;
  NapCat copies it to onebot11_<QQ号>.json at an account's first login.
- An onebot11_<QQ号>.json that already exists keeps everything an operator set in NapCat's
  WebUI; only the reverse WebSocket named "helpdesk" gets the template's entry with the token
  (added if it is missing), so a changed token reaches accounts that logged in before.

Usage: python render_config.py TEMPLATE CONFIG_DIR   (with ONEBOT_TOKEN set). Standard library
only: it runs with the app image's Python.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

ENTRY_NAME = "helpdesk"


class ConfigError(Exception):
    pass


def helpdesk_entry(config: dict[str, Any]) -> dict[str, Any]:
    """The template's reverse WebSocket to the app."""
    for entry in config.get("network", {}).get("websocketClients", []):
        if entry.get("name") == ENTRY_NAME:
            return dict(entry)
    raise ConfigError(f"the template has no websocketClients entry named {ENTRY_NAME!r}")


def with_entry(config: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """`config` with the entry named like `entry` replaced by it (appended when missing)."""
    result = copy.deepcopy(config)
    clients = result.setdefault("network", {}).setdefault("websocketClients", [])
    for index, existing in enumerate(clients):
        if existing.get("name") == entry["name"]:
            clients[index] = entry
            return result
    clients.append(entry)
    return result


def render(template: dict[str, Any], config_dir: Path, token: str) -> list[Path]:
    """Write onebot11.json and update every onebot11_<QQ号>.json; return the files written."""
    if not token.strip():
        raise ConfigError("ONEBOT_TOKEN is empty: set it in .env (the app refuses to run without it)")
    entry = helpdesk_entry(template) | {"token": token}
    written = [config_dir / "onebot11.json"]
    _write(written[0], with_entry(template, entry))
    for path in sorted(config_dir.glob("onebot11_*.json")):
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path.name} is not readable JSON ({exc}): fix it or delete it") from None
        _write(path, with_entry(current, entry))
        written.append(path)
    return written


def _write(path: Path, config: dict[str, Any]) -> None:
    # Private from the first byte (the token is in it); NapCat's entrypoint chowns the folder to
    # its own user before it starts. Replaced atomically: NapCat never reads half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(config, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def main(argv: list[str], environ: dict[str, str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: render_config.py TEMPLATE CONFIG_DIR (with ONEBOT_TOKEN set)\n")
        return 2
    template_path, config_dir = Path(argv[1]), Path(argv[2])
    try:
        template = json.loads(template_path.read_text(encoding="utf-8"))
        written = render(template, config_dir, environ.get("ONEBOT_TOKEN", ""))
    except (OSError, ValueError, ConfigError) as exc:
        sys.stderr.write(f"napcat-config: {exc}\n")
        return 1
    sys.stderr.write(f"napcat-config: wrote {', '.join(p.name for p in written)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv, dict(os.environ)))
