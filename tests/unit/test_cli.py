"""The `stratus` CLI against a fake REST edge (httpx.MockTransport) and a fake clock."""

from __future__ import annotations

import json
import shlex

import httpx
import pytest
from click.testing import CliRunner, Result

from cli.session import Session
from cli.stratus import main

SERVER_ID = "0b0c5b9e-5b1a-4c1e-9a57-3f7a1f0e6a11"
GROUP_ID = "6f1f4c1e-2b4e-4d7a-9a57-3f7a1f0e6a22"


def server(**fields) -> dict:
    """A server as the edge prints it: every primitive field present."""
    return {
        "id": SERVER_ID,
        "name": "web-1",
        "flavor": "m1.small",
        "image_ref": "cirros",
        "key_name": "",
        "availability_zone": "",
        "server_group_id": "",
        "metadata": {},
        "user_data": "",
        "status": "ACTIVE",
        "task_state": "",
        "power_state": "RUNNING",
        "host": "fake-1",
        "host_status": "UP",
        "project_id": "project-a",
        "user_id": "alice",
        "vcpus": 1,
        "ram_mb": 512,
        "disk_gb": 1,
        "create_time": "2025-11-25T03:28:00.123456Z",
        "update_time": "2025-11-25T03:28:05Z",
        **fields,
    }


def api_error(code: int, reason: str, message: str, **extra) -> tuple[int, dict]:
    status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}[code]
    error = {"code": code, "status": status, "reason": reason, "message": message}
    return code, {"error": {**error, "request_id": "req-1", **extra}}


class FakeEdge:
    """Canned answers by method and path, in order (the last one repeats); records requests."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers) -> None:
        self.routes[(method, path)] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            code, body = api_error(404, "stratus.unknown_route", f"no route {request.url.path}")
            return httpx.Response(code, json=body)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer):
            answer = answer(request)
        code, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(code, json=body)

    def bodies(self, method: str) -> list:
        return [json.loads(r.content) for r in self.requests if r.method == method]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch, tmp_path):
    for name in ("STRATUS_URL", "STRATUS_TOKEN", "STRATUS_CLI_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run(edge, clock):
    def invoke(command: str, env: dict | None = None) -> Result:
        """`stratus COMMAND` (split like a shell would) against the fake edge."""
        session = Session(
            transport=httpx.MockTransport(edge), sleep=clock.sleep, clock=lambda: clock.now
        )
        return CliRunner().invoke(main, shlex.split(command), obj=session, env=env)

    return invoke


# Output


def test_server_list_is_an_aligned_table(run, edge):
    other = server(
        id="7d9e1b0c-0000-4000-8000-000000000001",
        name="db",
        status="BUILD",
        task_state="spawning",
        power_state="NOSTATE",
    )
    edge.on("GET", "/v1/servers", {"servers": [server(), other], "next_page_token": ""})
    result = run("server list")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert " ".join(header.split()) == "ID NAME STATUS TASK POWER HOST FLAVOR IMAGE CREATED"
    assert " ".join(first.split()) == (
        f"{SERVER_ID} web-1 ACTIVE RUNNING fake-1 m1.small cirros 2025-11-25T03:28:00Z"
    )
    assert second.split()[:4] == [other["id"], "db", "BUILD", "spawning"]
    # Columns line up: each starts where its header does.
    for column in ("STATUS", "POWER", "CREATED"):
        at = header.index(column)
        assert first[at - 2 : at] == "  " and first[at] != " "


def test_json_prints_the_api_document(run, edge):
    edge.on("GET", f"/v1/servers/{SERVER_ID}", server(metadata={"role": "web"}))
    result = run(f"server show {SERVER_ID} -f json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == server(metadata={"role": "web"})


def test_format_may_come_before_the_command(run, edge):
    edge.on("GET", "/v1/flavors", {"flavors": [], "next_page_token": ""})
    result = run("-f json flavor list")
    assert json.loads(result.stdout) == {"flavors": []}


def test_server_show_is_one_field_per_line(run, edge):
    edge.on(
        "GET",
        f"/v1/servers/{SERVER_ID}",
        server(
            status="ERROR",
            metadata={"b": "2", "a": "1"},
            fault={"code": "compute.no_valid_host", "message": "no valid host for web-1"},
        ),
    )
    result = run(f"server show {SERVER_ID}")
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line.strip())
    assert rows["status"] == "ERROR"
    assert rows["metadata"] == "a=1, b=2"
    assert rows["fault.message"] == "no valid host for web-1"
    assert rows["create_time"] == "2025-11-25T03:28:00Z"


def test_server_named_by_name_is_looked_up(run, edge):
    edge.on("GET", "/v1/servers", {"servers": [server()], "next_page_token": ""})
    edge.on("GET", f"/v1/servers/{SERVER_ID}", server())
    assert run("server show web-1").exit_code == 0
    assert edge.requests[0].url.params["name"] == "web-1"


def test_an_ambiguous_server_name_asks_for_the_id(run, edge):
    twin = server(id="7d9e1b0c-0000-4000-8000-000000000001")
    edge.on("GET", "/v1/servers", {"servers": [server(), twin], "next_page_token": ""})
    result = run("server delete web-1")
    assert result.exit_code == 1
    assert result.stderr == "error: 2 servers are named 'web-1'; give the id\n"


def test_limits_and_hosts_tables(run, edge):
    edge.on(
        "GET",
        "/v1/limits",
        {
            "project_id": "project-a",
            "limits": {
                "ram_mb": {"limit": 51200, "in_use": 512},
                "instances": {"limit": -1, "in_use": 1},
            },
        },
    )
    lines = run("limits").stdout.splitlines()
    assert [line.split() for line in lines] == [
        ["RESOURCE", "LIMIT", "IN", "USE"],
        ["instances", "unlimited", "1"],
        ["ram_mb", "51200", "512"],
    ]
    edge.on(
        "GET",
        "/v1/hosts",
        {
            "hosts": [
                {
                    "name": "fake-1",
                    "status": "UP",
                    "availability_zone": "default",
                    "driver": "fake",
                    "resource_provider_uuid": GROUP_ID,
                    "server_count": 1,
                    "resources": {
                        "VCPU": {"capacity": 64, "used": 1},
                        "MEMORY_MB": {"capacity": 65024, "used": 512},
                    },
                }
            ]
        },
    )
    lines = run("host list").stdout.splitlines()
    assert lines[1].split() == ["fake-1", "UP", "default", "fake", "1", "1/64", "512/65024", "0/0"]


# Requests


def test_create_sends_the_server_and_counts(run, edge, tmp_path):
    user_data = tmp_path / "cloud-init.yaml"
    user_data.write_text("#cloud-config\n")
    edge.on("GET", "/v1/server_groups", {"server_groups": [{"id": GROUP_ID, "name": "web"}]})
    two = [server(name="web-1", status="BUILD"), server(name="web-2", status="BUILD")]
    edge.on("POST", "/v1/servers", {"servers": two})
    result = run(
        "server create web --flavor m1.small --image cirros --key-name mine --group web"
        f" --property role=web --property tier=1 --user-data {user_data} --min 1 --max 2"
    )
    assert result.exit_code == 0, result.output
    assert edge.bodies("POST") == [
        {
            "server": {
                "name": "web",
                "flavor": "m1.small",
                "image_ref": "cirros",
                "key_name": "mine",
                "server_group_id": GROUP_ID,
                "metadata": {"role": "web", "tier": "1"},
                "user_data": "#cloud-config\n",
            },
            "min_count": 1,
            "max_count": 2,
        }
    ]
    assert len(result.stdout.splitlines()) == 3  # the list table: a header and two servers


def test_create_of_one_prints_the_api_answer_as_json(run, edge):
    edge.on("POST", "/v1/servers", {"servers": [server(status="BUILD")]})
    result = run("server create web-1 --flavor m1.small --image cirros -f json")
    assert json.loads(result.stdout) == {"servers": [server(status="BUILD")]}


def test_bad_property_is_a_usage_error(run, edge):
    result = run("server create x --flavor f --image i --property novalue")
    assert result.exit_code == 2
    assert "'novalue' is not KEY=VALUE" in result.stderr
    assert edge.requests == []


def test_reboot_hard_and_set_metadata(run, edge):
    edge.on(
        "POST", f"/v1/servers/{SERVER_ID}:reboot", server(status="REBOOT", task_state="rebooting")
    )
    assert run(f"server reboot {SERVER_ID} --hard").exit_code == 0
    assert edge.bodies("POST") == [{"type": "HARD"}]

    edge.on("GET", f"/v1/servers/{SERVER_ID}", server(metadata={"a": "1", "b": "2"}))
    edge.on("PATCH", f"/v1/servers/{SERVER_ID}", server(name="web-9"))
    result = run(f"server set {SERVER_ID} --name web-9 --property c=3 --unset-property a")
    assert result.exit_code == 0, result.output
    patch = edge.requests[-1]
    assert patch.url.params["update_mask"] == "name,metadata"
    assert json.loads(patch.content) == {"name": "web-9", "metadata": {"b": "2", "c": "3"}}


def test_flavor_create_and_show_by_name(run, edge):
    flavor = {
        "id": GROUP_ID,
        "name": "m1.tiny",
        "vcpus": 1,
        "ram_mb": 512,
        "disk_gb": 1,
        "extra_specs": {},
        "is_public": False,
        "create_time": "2025-11-25T03:28:00Z",
    }
    edge.on("POST", "/v1/flavors", flavor)
    result = run(
        "flavor create m1.tiny --vcpus 1 --ram-mb 512 --private"
        " --extra-spec trait:HW_CPU_X86_AVX2=required"
    )
    assert result.exit_code == 0, result.output
    assert edge.bodies("POST") == [
        {
            "name": "m1.tiny",
            "vcpus": 1,
            "ram_mb": 512,
            "is_public": False,
            "extra_specs": {"trait:HW_CPU_X86_AVX2": "required"},
        }
    ]
    edge.on("GET", "/v1/flavors", {"flavors": [flavor], "next_page_token": ""})
    edge.on("GET", f"/v1/flavors/{GROUP_ID}", flavor)
    assert "is_public    false" in run("flavor show m1.tiny").stdout


def test_keypair_create_reads_the_public_key_file(run, edge, tmp_path):
    key = tmp_path / "id_ed25519.pub"
    key.write_text("ssh-ed25519 AAAAC3Nz me@host\n")
    edge.on("POST", "/v1/keypairs", {"name": "mine", "public_key": "ssh-ed25519 AAAAC3Nz me@host"})
    assert run(f"keypair create mine --public-key {key}").exit_code == 0
    assert edge.bodies("POST") == [{"name": "mine", "public_key": "ssh-ed25519 AAAAC3Nz me@host"}]


# Pagination


def test_list_follows_next_page_token(run, edge):
    pages = {"": ("p2", ["a", "b"]), "p2": ("p3", ["c"]), "p3": ("", ["d"])}

    def page(request: httpx.Request) -> dict:
        token, names = pages[request.url.params.get("page_token", "")]
        return {"servers": [server(id=n, name=n) for n in names], "next_page_token": token}

    edge.on("GET", "/v1/servers", page)
    result = run("server list --status active -f json")
    assert [s["name"] for s in json.loads(result.stdout)["servers"]] == ["a", "b", "c", "d"]
    assert [r.url.params.get("page_token") for r in edge.requests] == [None, "p2", "p3"]
    assert {r.url.params["status"] for r in edge.requests} == {"ACTIVE"}


def test_limit_stops_following(run, edge):
    edge.on(
        "GET",
        "/v1/servers",
        {"servers": [server(name="a"), server(name="b")], "next_page_token": "more"},
    )
    result = run("server list --limit 2 --all-projects")
    assert len(edge.requests) == 1
    assert edge.requests[0].url.params["page_size"] == "2"
    assert edge.requests[0].url.params["all_projects"] == "true"
    assert "PROJECT" in result.stdout.splitlines()[0]


# Endpoint and token: option > environment > config file > default


FILE = 'url = "http://file:1"\ntoken = "t-file"\n'


@pytest.mark.parametrize(
    ("options", "env", "file", "expected_url", "expected_auth"),
    [
        ("", {}, "", "http://127.0.0.1:8780", None),
        ("", {}, FILE, "http://file:1", "Bearer t-file"),
        ("", {"STRATUS_URL": "http://env:2"}, FILE, "http://env:2", "Bearer t-file"),
        ("--token t-opt", {"STRATUS_TOKEN": "t-env"}, FILE, "http://file:1", "Bearer t-opt"),
        (
            "--url http://opt:3",
            {"STRATUS_URL": "http://env:2", "STRATUS_TOKEN": "t-env"},
            FILE,
            "http://opt:3",
            "Bearer t-env",
        ),
    ],
)
def test_endpoint_and_token_precedence(
    run, edge, tmp_path, options, env, file, expected_url, expected_auth
):
    config = tmp_path / "config" / "stratus" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(file)
    edge.on("GET", "/v1/limits", {"project_id": "p", "limits": {}})
    assert run(f"{options} limits", env=env).exit_code == 0
    request = edge.requests[0]
    assert str(request.url) == f"{expected_url}/v1/limits"
    assert request.headers.get("authorization") == expected_auth


def test_config_file_named_by_environment(run, edge, tmp_path):
    config = tmp_path / "elsewhere.toml"
    config.write_text('url = "http://named:4"\n')
    edge.on("GET", "/v1/limits", {"project_id": "p", "limits": {}})
    assert run("limits", env={"STRATUS_CLI_CONFIG": str(config)}).exit_code == 0
    assert edge.requests[0].url.host == "named"

    missing = run("limits", env={"STRATUS_CLI_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


def test_config_file_with_an_unknown_key_is_an_error(run, edge, tmp_path):
    config = tmp_path / "config" / "stratus" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('url = "http://file:1"\nendpoint = "x"\n')
    result = run("limits")
    assert result.exit_code == 1
    assert "unknown key(s) endpoint" in result.stderr
    # Options that override everything the file could say leave it unread.
    edge.on("GET", "/v1/limits", {"project_id": "p", "limits": {}})
    assert run("--url http://o:1 --token t limits").exit_code == 0


# Errors


def test_api_error_is_one_line_on_stderr(run, edge):
    edge.on(
        "GET",
        f"/v1/servers/{SERVER_ID}",
        api_error(404, "compute.server_not_found", f"server {SERVER_ID} not found"),
    )
    result = run(f"server show {SERVER_ID}")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: server {SERVER_ID} not found (compute.server_not_found, HTTP 404)\n"
    )


def test_field_violations_are_listed_unless_the_message_says_it(run, edge):
    violations = [
        {"field": "flavor.vcpus", "description": "must be at least 1"},
        {"field": "flavor.ram_mb", "description": "must be at least 1"},
    ]
    edge.on(
        "POST",
        "/v1/flavors",
        api_error(
            400, "stratus.invalid_field", "2 fields are invalid", field_violations=violations
        ),
        api_error(
            400,
            "stratus.invalid_field",
            "flavor.vcpus: must be at least 1",
            field_violations=violations[:1],
        ),
    )
    result = run("flavor create x --vcpus 0 --ram-mb 0")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: 2 fields are invalid (stratus.invalid_field, HTTP 400)",
        "  flavor.vcpus: must be at least 1",
        "  flavor.ram_mb: must be at least 1",
    ]
    result = run("flavor create x --vcpus 0 --ram-mb 1")
    assert result.stderr.splitlines() == [
        "error: flavor.vcpus: must be at least 1 (stratus.invalid_field, HTTP 400)"
    ]


def test_an_error_without_the_json_shape_shows_its_text(run, edge):
    edge.routes[("GET", "/v1/limits")] = [lambda _: (503, "upstream connect error")]
    result = run("limits")
    assert result.stderr == 'error: "upstream connect error" (HTTP 503)\n'


def test_connection_refused_names_the_url(run, edge):
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    edge.on("GET", "/v1/limits", refuse)
    result = run("--url http://127.0.0.1:9 limits")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: cannot connect to Stratus at http://127.0.0.1:9: [Errno 111] Connection refused"
    )


# --wait


def test_create_wait_prints_each_change_until_active(run, edge, clock):
    edge.on(
        "POST",
        "/v1/servers",
        {
            "servers": [
                server(status="BUILD", task_state="scheduling", power_state="NOSTATE", host="")
            ]
        },
    )
    edge.on(
        "GET",
        f"/v1/servers/{SERVER_ID}",
        server(status="BUILD", task_state="spawning"),
        server(status="BUILD", task_state="spawning"),
        server(status="ACTIVE"),
    )
    result = run("server create web-1 --flavor m1.small --image cirros --wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "[   0.0s] web-1: BUILD (scheduling)",
        "[   0.5s] web-1: BUILD (spawning)",
        "[   1.5s] web-1: ACTIVE",
    ]
    assert clock.sleeps == 3
    assert "status             ACTIVE" in result.stdout


def test_wait_ending_in_error_exits_non_zero_with_the_fault(run, edge):
    edge.on(
        "POST", f"/v1/servers/{SERVER_ID}:start", server(status="SHUTOFF", task_state="powering-on")
    )
    failed = server(
        status="ERROR", fault={"code": "hostagent.driver_error", "message": "disk gone"}
    )
    edge.on("GET", f"/v1/servers/{SERVER_ID}", failed)
    result = run(f"server start {SERVER_ID} --wait -f json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == failed
    assert result.stderr.splitlines()[-2:] == [
        "[   0.5s] web-1: ERROR: disk gone",
        f"error: server web-1 ({SERVER_ID}) is ERROR: disk gone",
    ]


def test_wait_gives_up_at_the_timeout(run, edge, clock):
    edge.on("POST", f"/v1/servers/{SERVER_ID}:stop", server(task_state="powering-off"))
    edge.on("GET", f"/v1/servers/{SERVER_ID}", server(task_state="powering-off"))
    result = run(f"server stop {SERVER_ID} --wait --timeout 2")
    assert result.exit_code == 1
    assert (clock.now, clock.sleeps) == (2.0, 4)
    assert result.stderr.splitlines()[-1] == (
        f"error: timed out after 2 s waiting for server web-1 ({SERVER_ID}), "
        "still ACTIVE (powering-off)"
    )


def test_an_action_that_settles_elsewhere_says_why(run, edge):
    edge.on("POST", f"/v1/servers/{SERVER_ID}:stop", server(task_state="powering-off"))
    edge.on("GET", f"/v1/servers/{SERVER_ID}", server())
    edge.on(
        "GET",
        f"/v1/servers/{SERVER_ID}/actions",
        {"actions": [{"action": "stop", "result": "error", "message": "the hypervisor refused"}]},
    )
    result = run(f"server stop {SERVER_ID} --wait")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: server web-1 ({SERVER_ID}) is ACTIVE, expected SHUTOFF: "
        "stop failed: the hypervisor refused"
    )


def test_delete_wait_ends_when_the_server_is_gone(run, edge):
    edge.on("DELETE", f"/v1/servers/{SERVER_ID}", server(task_state="deleting"))
    edge.on(
        "GET",
        f"/v1/servers/{SERVER_ID}",
        server(task_state="deleting"),
        api_error(404, "compute.server_not_found", "gone"),
    )
    result = run(f"server delete {SERVER_ID} --wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "[   0.0s] web-1: ACTIVE (deleting)",
        "[   1.0s] web-1: deleted",
    ]
    assert result.stdout == ""
