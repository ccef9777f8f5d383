"""The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/) agree with the
code: every setting they pass exists, every service and volume they name is defined, every path
they route or probe is a route of the app, every command they run is a command of the CLI.
No Docker engine is needed: the files are parsed, and the image's CMD and HEALTHCHECK are run
as plain processes on this machine.

Plain (sync) tests: the live-server test runs the CLI in a subprocess.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from starlette.routing import Match

from app.cli import app as cli
from app.core.config import AttachmentSettings, Settings
from app.main import create_app
from app.services.attachment import upload_body_limit
from tests.test_service.test_config import setting_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NAPCAT_DIR = ROOT / "deploy" / "napcat"
NAPCAT_TEMPLATE = NAPCAT_DIR / "onebot11.json"
NGINX_CONF = ROOT / "deploy" / "nginx" / "helpdesk.conf"
# Created by the operator (certificates); Docker creates a missing bind-mount source as a folder.
OPERATOR_BIND_SOURCES = {"./deploy/nginx/certs"}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # what a container must bind
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- parsing helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of Compose's two forms."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (a missing required one fails)."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name, "")
        if op in (":-", "-"):
            return current or arg
        if op in (":?", "?"):
            if not current:
                raise KeyError(f"{name}: {arg}")
            return current
        return current

    return INTERPOLATION.sub(replace, value).replace("$$", "$")


def uses_our_image(service: dict[str, Any]) -> bool:
    return "build" in service


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every instruction, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def exec_form(arguments: str) -> list[str]:
    assert arguments.startswith("["), f"use the exec (JSON) form: {arguments}"
    return json.loads(arguments)


def healthcheck_command() -> list[str]:
    [arguments] = [rest for keyword, rest in final_stage(dockerfile_instructions()) if keyword == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD ") + 4 :].strip())


def image_cmd() -> list[str]:
    [arguments] = [rest for keyword, rest in final_stage(dockerfile_instructions()) if keyword == "CMD"]
    return exec_form(arguments)


def nginx_blocks(text: str) -> list[tuple[str, list[str], list[Any]]]:
    """nginx's config as (directive, arguments, children) trees; enough for these checks."""
    tokens = re.findall(r"'[^']*'|\"[^\"]*\"|[{};]|[^\s{};'\"]+", re.sub(r"#[^\n]*", "", text))
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token.strip("'\""))
    assert len(stack) == 1, "unbalanced braces"
    return stack[0]


def directives(block: list[Any], name: str) -> list[list[str]]:
    return [args for directive, args, _ in block if directive == name]


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("napcat_render_config", NAPCAT_DIR / "render_config.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the app and the CLI as the files see them ------------------------------------------------


@pytest.fixture(scope="module")
def application(tmp_path_factory):
    """The app object, built and never started (nothing connects before the lifespan)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("data"), secret_key="x" * 48)
    yield create_app(settings)
    root.handlers[:] = handlers  # create_app configures logging: leave the suite's alone
    root.setLevel(level)


def has_route(application, path: str, *, websocket: bool = False, method: str = "GET") -> bool:
    scope = {"type": "websocket" if websocket else "http", "path": path, "method": method, "root_path": ""}
    scope |= {"headers": [], "query_string": b"", "app": application}
    return any(route.matches(scope)[0] == Match.FULL for route in application.router.routes)


def cli_options(command: str) -> set[str]:
    """The option spellings of a `helpdesk` sub-command; KeyError if there is no such command."""
    group = typer.main.get_command(cli)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return {opt for param in params for opt in (*param.opts, *param.secondary_opts)}


def assert_real_cli_call(argv: list[str]) -> None:
    assert argv[0] == "helpdesk", argv
    command, *options = argv[1:]
    known = cli_options(command)
    assert {o for o in options if o.startswith("-")} <= known, (argv, known)


# --- docker-compose.yml -----------------------------------------------------------------------


def test_every_service_named_in_depends_on_exists_with_a_condition_it_can_meet(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        items = depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)
        for target, spec in items:
            assert target in services, f"{name} depends on undefined service {target}"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in VALID_CONDITIONS, (name, target, condition)
            other = services[target]
            if condition == "service_healthy":
                has_check = "healthcheck" in other and not other["healthcheck"].get("disable")
                assert has_check or (uses_our_image(other) and "healthcheck" not in other), (
                    f"{name} waits for {target} to be healthy, which has no health check"
                )
            if condition == "service_completed_successfully":
                assert other.get("restart") == "no", f"{target} runs once: it must not restart"


def test_app_and_worker_wait_for_a_healthy_database_and_redis(services):
    for name in ("app", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_every_helpdesk_variable_a_service_sets_is_a_real_setting(services):
    names = setting_names()
    passed = {var for service in services.values() for var in environment(service) if var.startswith("HELPDESK_")}

    assert passed, "the app gets no settings at all?"
    assert passed - names == set()


def test_the_compose_environment_makes_valid_production_settings(services, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    variables = {"POSTGRES_PASSWORD": "p0stgres", "HELPDESK_SECRET_KEY": "k" * 48, "ONEBOT_TOKEN": "t0ken"}
    for name in ("app", "worker"):
        for var in list(os.environ):
            if var.upper().startswith("HELPDESK_"):
                monkeypatch.delenv(var)
        for var, value in environment(services[name]).items():
            monkeypatch.setenv(var, interpolate(value, variables))

        settings = Settings(_env_file=None)  # type: ignore[call-arg]

        assert settings.env == "production"
        assert str(settings.data_dir) == "/data"
        assert settings.database_url == "postgresql+asyncpg://helpdesk:p0stgres@postgres:5432/helpdesk"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.onebot.access_token.get_secret_value() == "t0ken"
        assert settings.worker.enabled is (name != "app")


def test_a_missing_secret_stops_compose_instead_of_starting_half_configured(services):
    app_env = environment(services["app"])
    for var, setting in [
        ("HELPDESK_SECRET_KEY", "HELPDESK_SECRET_KEY"),
        ("ONEBOT_TOKEN", "HELPDESK_ONEBOT__ACCESS_TOKEN"),
        ("POSTGRES_PASSWORD", "HELPDESK_DATABASE_URL"),
    ]:
        others = {"POSTGRES_PASSWORD": "p", "HELPDESK_SECRET_KEY": "k", "ONEBOT_TOKEN": "t"}
        del others[var]
        with pytest.raises(KeyError, match=var):
            interpolate(app_env[setting], others)


def test_every_variable_compose_reads_from_env_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    variables = {m["name"] for m in INTERPOLATION.finditer(COMPOSE.read_text(encoding="utf-8"))}

    assert {"POSTGRES_PASSWORD", "HELPDESK_SECRET_KEY", "ONEBOT_TOKEN", "QQ_ACCOUNT"} <= variables
    assert {name for name in variables if f"`{name}`" not in readme} == set()


def test_every_volume_used_is_declared_and_every_declared_volume_is_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for entry in service.get("volumes") or []:
            source = entry["source"] if isinstance(entry, dict) else entry.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert source in OPERATOR_BIND_SOURCES or (ROOT / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert declared - used == set()


def test_app_and_worker_share_the_data_volume_at_the_images_data_dir(services):
    for name in ("app", "worker"):
        assert "helpdesk-data:/data" in services[name]["volumes"]
        assert environment(services[name])["HELPDESK_DATA_DIR"] == "/data"


def test_ports_are_published_on_the_loopback_only_and_8000_by_the_app_alone(services):
    published: dict[str, list[str]] = {}
    for name, service in services.items():
        if service.get("profiles"):  # opt-in extras (the https front) publish 80/443 on purpose
            continue
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
            published.setdefault(name, []).append(str(port))
    assert published == {"app": ["127.0.0.1:8000:8000"], "napcat": ["127.0.0.1:6099:6099"]}


def test_services_run_real_cli_commands(services):
    assert services["app"]["command"] == ["helpdesk", "serve", "--host", ALL_INTERFACES, "--no-worker"]
    assert services["worker"]["command"] == ["helpdesk", "worker"]
    for service in services.values():
        if uses_our_image(service) and "command" in service:
            assert_real_cli_call(service["command"])


def test_the_app_runs_no_general_worker_while_a_separate_worker_service_exists(services):
    assert "--no-worker" in services["app"]["command"]
    assert environment(services["app"])["HELPDESK_WORKER__ENABLED"] == "false"
    assert services["worker"]["healthcheck"] == {"disable": True}  # the image's check probes HTTP


def test_trusted_proxies_name_the_gateway_and_the_https_front(compose, services):
    ipam = compose["networks"]["default"]["ipam"]["config"][0]
    subnet = ipaddress.ip_network(ipam["subnet"])
    dynamic = ipaddress.ip_network(ipam["ip_range"])
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["default"]["ipv4_address"])
    trusted_value = interpolate(environment(services["app"])["HELPDESK_TRUSTED_PROXIES"], {})
    trusted = {ipaddress.ip_address(entry) for entry in json.loads(trusted_value)}

    assert trusted == {ipaddress.ip_address(ipam["gateway"]), nginx_ip}
    assert nginx_ip in subnet
    assert nginx_ip not in dynamic  # no other container can be handed nginx's address


# --- NapCat -----------------------------------------------------------------------------------


def helpdesk_client(config: dict[str, Any]) -> dict[str, Any]:
    [entry] = [e for e in config["network"]["websocketClients"] if e["name"] == "helpdesk"]
    return entry


def test_napcat_config_points_a_reverse_websocket_at_the_app(services, application):
    entry = helpdesk_client(json.loads(NAPCAT_TEMPLATE.read_text(encoding="utf-8")))
    url = urlsplit(entry["url"])
    app_port = int(environment(services["app"])["HELPDESK_PORT"])

    assert entry["enable"] is True
    assert url.scheme == "ws"
    assert url.hostname in services
    assert url.hostname == "app"
    assert url.port == app_port
    assert url.path == "/onebot/v11/ws"
    assert has_route(application, url.path, websocket=True)
    assert entry["messagePostFormat"] == "array"
    assert entry["reportSelfMessage"] is False


def test_the_napcat_template_holds_no_token(services):
    """The token comes from .env at start-up (napcat-config): none is committed."""
    assert helpdesk_client(json.loads(NAPCAT_TEMPLATE.read_text(encoding="utf-8")))["token"] == ""


def test_napcat_gets_the_token_the_app_gets(services):
    app_token = environment(services["app"])["HELPDESK_ONEBOT__ACCESS_TOKEN"]
    renderer_token = environment(services["napcat-config"])["ONEBOT_TOKEN"]
    [app_var] = [m["name"] for m in INTERPOLATION.finditer(app_token)]
    [renderer_var] = [m["name"] for m in INTERPOLATION.finditer(renderer_token)]

    assert app_var == renderer_var == "ONEBOT_TOKEN"


def test_the_renderer_writes_into_the_volume_napcat_reads_its_config_from(services):
    renderer, napcat = services["napcat-config"], services["napcat"]
    mounts = dict(entry.split(":")[:2][::-1] for entry in renderer["volumes"])  # target -> source
    script, template, output = renderer["entrypoint"][1:]

    assert renderer["entrypoint"][0] == "python"
    assert f"{mounts['/config']}:/app/napcat/config" in napcat["volumes"]
    assert output == "/config"
    for path in (script, template):
        folder, name = path.rsplit("/", 1)
        assert ROOT / mounts[folder].removeprefix("./") / name == NAPCAT_DIR / name
        assert (NAPCAT_DIR / name).exists()
    assert napcat["depends_on"]["napcat-config"]["condition"] == "service_completed_successfully"
    assert any(entry.endswith(":/app/.config/QQ") for entry in napcat["volumes"])  # login survives


def test_the_renderer_fills_in_the_token_and_keeps_an_accounts_own_settings(tmp_path):
    render = load_renderer()
    template = json.loads(NAPCAT_TEMPLATE.read_text(encoding="utf-8"))
    account = tmp_path / "onebot11_123456789.json"
    # As NapCat saved it after the first login, plus an operator's own server from the WebUI.
    stale = render.with_entry(template, helpdesk_client(template) | {"token": "old"})
    stale["network"]["websocketServers"] = [{"name": "mine", "enable": True, "port": 3001}]
    account.write_text(json.dumps(stale), encoding="utf-8")

    code = render.main(["render_config.py", str(NAPCAT_TEMPLATE), str(tmp_path)], {"ONEBOT_TOKEN": "s3cret"})

    assert code == 0
    default = json.loads((tmp_path / "onebot11.json").read_text(encoding="utf-8"))
    assert helpdesk_client(default)["token"] == "s3cret"
    assert default == render.with_entry(template, helpdesk_client(template) | {"token": "s3cret"})
    updated = json.loads(account.read_text(encoding="utf-8"))
    assert helpdesk_client(updated)["token"] == "s3cret"
    assert updated["network"]["websocketServers"] == [{"name": "mine", "enable": True, "port": 3001}]
    assert len(updated["network"]["websocketClients"]) == 1
    assert (tmp_path / "onebot11.json").stat().st_mode & 0o077 == 0  # the token is not world-readable


def test_the_renderer_adds_the_reverse_websocket_to_an_account_that_lacks_it(tmp_path):
    render = load_renderer()
    account = tmp_path / "onebot11_42.json"
    account.write_text(json.dumps({"network": {"websocketClients": [{"name": "other"}]}}), encoding="utf-8")

    assert render.main(["r", str(NAPCAT_TEMPLATE), str(tmp_path)], {"ONEBOT_TOKEN": "t"}) == 0

    names = [e["name"] for e in json.loads(account.read_text(encoding="utf-8"))["network"]["websocketClients"]]
    assert names == ["other", "helpdesk"]


@pytest.mark.parametrize("token", ["", "   "])
def test_the_renderer_refuses_an_empty_token_and_writes_nothing(tmp_path, capsys, token):
    render = load_renderer()

    code = render.main(["r", str(NAPCAT_TEMPLATE), str(tmp_path)], {"ONEBOT_TOKEN": token})

    assert code == 1
    assert "ONEBOT_TOKEN" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_renderer_stops_on_an_account_file_it_cannot_read(tmp_path, capsys):
    render = load_renderer()
    (tmp_path / "onebot11_7.json").write_text("{ // a comment NapCat's json5 would take\n}", encoding="utf-8")

    assert render.main(["r", str(NAPCAT_TEMPLATE), str(tmp_path)], {"ONEBOT_TOKEN": "t"}) == 1
    assert "onebot11_7.json" in capsys.readouterr().err


# --- Dockerfile and .dockerignore -------------------------------------------------------------


def test_the_image_is_python_311_slim_built_with_uv_from_the_hashed_lock():
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]

    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert len(froms) == 2, "a build stage and a runtime stage"
    assert "uv pip sync" in text
    assert "requirements.lock" in text


def test_the_runtime_stage_runs_unprivileged_with_its_data_in_a_volume():
    stage = final_stage(dockerfile_instructions())
    users = [rest for keyword, rest in stage if keyword == "USER"]
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")

    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8000") in stage
    assert ("VOLUME", '["/data"]') in stage
    assert "HELPDESK_DATA_DIR=/data" in env
    assert set(re.findall(r"(HELPDESK_[A-Z0-9_]+)=", env)) <= setting_names()


def test_the_healthcheck_probes_a_route_of_the_app(application):
    command = healthcheck_command()
    paths = re.findall(r"/api/v1/[A-Za-z0-9_/-]+", " ".join(command))

    assert command[0] == "python"  # the slim image has no curl
    assert paths == ["/api/v1/health"]
    assert has_route(application, paths[0])


def test_the_image_cmd_is_a_real_cli_command():
    command = image_cmd()

    assert command == ["helpdesk", "serve", "--host", ALL_INTERFACES]
    assert_real_cli_call(command)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'helpdesk = "app.cli:main"' in pyproject


def test_dockerignore_keeps_secrets_and_local_state_out_and_what_the_build_copies_in():
    patterns = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in {"", "#"}
    }
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied |= set(shlex.split(rest)[:-1])

    assert {".venv", "data", ".git", ".env"} <= patterns
    assert copied, "the Dockerfile copies nothing?"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in patterns, f"{source} is copied but excluded from the build context"


def test_the_images_cmd_serves_and_its_healthcheck_passes(tmp_path):
    """The image's CMD and HEALTHCHECK, run as plain processes (what Docker would run)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("HELPDESK_")}
    env |= {"HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_PORT": str(port), "HELPDESK_LOG_LEVEL": "WARNING"}
    env |= {"HELPDESK_AUTH__ARGON2_MEMORY_KIB": "64", "HELPDESK_AUTH__ARGON2_TIME_COST": "1"}
    command = image_cmd()
    command[0] = str(Path(sys.executable).with_name(command[0]))  # the console script of this venv
    command[command.index("--host") + 1] = "127.0.0.1"  # a container's 0.0.0.0 is this machine's loopback
    check = [sys.executable, *healthcheck_command()[1:]]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    try:
        deadline = time.monotonic() + 120  # a cold import of the app takes seconds on a busy machine
        while True:
            probe_result = subprocess.run(check, env=env, capture_output=True, timeout=10, check=False)  # noqa: S603
            if probe_result.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "exited"
            assert time.monotonic() < deadline, probe_result.stderr.decode()[-2000:]
            time.sleep(0.25)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            exit_code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    errors = server.stderr.read().decode() if server.stderr else ""
    # docker stop: a clean shutdown, after which uvicorn re-raises the SIGTERM it handled.
    assert exit_code in {0, -signal.SIGTERM}, errors
    assert "Traceback" not in errors


# --- nginx ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx() -> list[Any]:
    return nginx_blocks(NGINX_CONF.read_text(encoding="utf-8"))


def tls_server(nginx: list[Any]) -> list[Any]:
    [children] = [c for d, _, c in nginx if d == "server" and any("ssl" in args for args in directives(c, "listen"))]
    return children


def locations(server: list[Any]) -> dict[str, list[Any]]:
    return {" ".join(args): children for directive, args, children in server if directive == "location"}


def test_nginx_proxies_to_the_app_service_port(nginx, services):
    [upstream] = [children for directive, _, children in nginx if directive == "upstream"]
    [[target]] = directives(upstream, "server")
    host, port = target.split(":")

    assert host in services
    assert host == "app"
    assert int(port) == int(environment(services["app"])["HELPDESK_PORT"])
    for children in locations(tls_server(nginx)).values():
        assert directives(children, "proxy_pass") == [["http://helpdesk_app"]]


def test_nginx_forwards_client_address_scheme_and_websocket_upgrades(nginx):
    server = tls_server(nginx)
    headers = {args[0]: args[1] for args in directives(server, "proxy_set_header")}
    [upgrade_map] = [(args, children) for directive, args, children in nginx if directive == "map"]

    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert upgrade_map[0] == ["$http_upgrade", "$connection_upgrade"]
    assert directives(server, "proxy_http_version") == [["1.1"]]
    # A location that sets any header of its own would drop all of the server's.
    for name, children in locations(server).items():
        assert directives(children, "proxy_set_header") == [], name


def test_nginx_gives_both_websockets_a_location_of_their_own(nginx, application):
    found = locations(tls_server(nginx))
    for path in ("/api/v1/ws", "/onebot/v11/ws"):
        assert has_route(application, path, websocket=True)
        [[timeout]] = directives(found[f"= {path}"], "proxy_read_timeout")
        assert timeout in {"1h", "3600s", "3600"}


@pytest.mark.parametrize(
    ("location", "example"),
    [
        ("= /api/v1/events/stream", "/api/v1/events/stream"),
        (r"~ ^/api/v1/tickets/[0-9]+/reply-suggestion$", "/api/v1/tickets/42/reply-suggestion"),
    ],
)
def test_nginx_does_not_buffer_server_sent_events(nginx, application, location, example):
    children = locations(tls_server(nginx))[location]
    modifier, pattern = location.split(" ", 1)

    assert directives(children, "proxy_buffering") == [["off"]]
    assert directives(children, "proxy_read_timeout")
    assert (example == pattern) if modifier == "=" else re.fullmatch(pattern.strip("^$"), example)
    assert has_route(application, example)


def test_nginx_lets_an_upload_at_the_attachment_limit_through():
    server = tls_server(nginx_blocks(NGINX_CONF.read_text(encoding="utf-8")))
    [[size]] = directives(server, "client_max_body_size")
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", size).groups()  # type: ignore[union-attr]
    limit = int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]

    assert limit >= upload_body_limit(AttachmentSettings())
    assert limit <= 2 * upload_body_limit(AttachmentSettings())  # and not much more
