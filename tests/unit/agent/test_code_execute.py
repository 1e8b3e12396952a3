"""`code.execute`: a fresh process per call."""

from __future__ import annotations

import threading
import time

from .harness import Agent, AgentClient, Reply


def test_python_output_and_return_code(client: AgentClient) -> None:
    reply = client.call(
        "code.execute",
        code="import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(4)",
        timeout=10,
    )

    assert reply.status == 200
    assert reply.data["stdout"] == "out\n"
    assert reply.data["stderr"] == "err\n"
    assert reply.data["return_code"] == 4
    assert reply.data["truncated"] is False
    assert reply.data["execution_time_ms"] > 0


def test_python_is_the_default_and_runs_in_home(agent: Agent) -> None:
    reply = agent.client.call("code.execute", code="import os; print(os.getcwd())", timeout=10)

    assert reply.data["stdout"] == f"{agent.home}\n"


def test_bash_program(client: AgentClient) -> None:
    reply = client.call(
        "code.execute", code="x=5\necho $((x * 2))\ncat\nexit 2", language="bash", timeout=10
    )

    assert reply.data["stdout"] == "10\n"
    assert reply.data["return_code"] == 2


def test_each_run_is_a_fresh_process(client: AgentClient) -> None:
    client.call("code.execute", code="export SBX_X=1; cd /", language="bash", timeout=10)

    reply = client.call("code.execute", code='echo "[$SBX_X]"', language="bash", timeout=10)

    assert reply.data["stdout"] == "[]\n"


def test_token_is_not_in_the_program_environment(client: AgentClient) -> None:
    code = "import os\nprint('SANDBOX_AGENT_TOKEN' in os.environ, os.environ['SBX_TEST_INHERITED'])"

    reply = client.call("code.execute", code=code, timeout=10)

    assert reply.data["stdout"] == "False inherited\n"


def test_timeout_kills_the_program_and_keeps_partial_output(client: AgentClient) -> None:
    reply = client.call(
        "code.execute", code="import time\nprint('started')\ntime.sleep(30)", timeout=0.5
    )

    assert reply.status == 504
    assert reply.error["kind"] == "timeout"
    assert reply.error["data"]["stdout"] == "started\n"
    assert reply.error["data"]["return_code"] is None


def test_background_child_holding_the_pipes_does_not_block(client: AgentClient) -> None:
    # The child outlives the timeout: a call that waited for the pipes to close would be 504.
    reply = client.call("code.execute", code="sleep 30 &\necho parent", language="bash", timeout=10)

    assert reply.data["stdout"] == "parent\n"
    assert reply.data["return_code"] == 0


def test_output_over_the_limit_is_truncated(small_agent: Agent) -> None:
    reply = small_agent.client.call("code.execute", code="print('x' * 100_000)", timeout=10)

    assert reply.data["stdout"] == "x" * 1000
    assert reply.data["truncated"] is True


def test_unknown_language_names_language(client: AgentClient) -> None:
    reply = client.call("code.execute", code="puts 1", language="ruby", timeout=10)

    assert reply.status == 400
    assert reply.error["kind"] == "invalid_params"
    assert reply.error["field"] == "language"


def test_runs_alongside_a_busy_shell(agent: Agent) -> None:
    # The shell waits for a file only code.execute makes: were code.execute queued
    # behind the shell, the shell would run into its timeout instead.
    started, released = agent.home / "shell-started", agent.home / "released"
    shell = AgentClient(agent.url, agent.token)
    replies: dict[str, Reply] = {}
    waiting = f"touch {started}; until [ -e {released} ]; do sleep 0.01; done; echo released"
    busy = threading.Thread(
        target=lambda: replies.setdefault("shell", shell.run(waiting, timeout=10))
    )
    busy.start()
    try:
        deadline = time.monotonic() + 10  # a guard against a hang, not a timing assert
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = agent.client.call(
            "code.execute", code=f"touch {released}; echo free", language="bash", timeout=5
        )
    finally:
        busy.join()
        shell.close()

    assert reply.data["stdout"] == "free\n"
    assert replies["shell"].data["stdout"] == "released\n"


def test_programs_are_the_oom_killers_first_pick(client: AgentClient) -> None:
    # Past the memory limit the kernel kills the session's programs, not the agent.
    reply = client.call(
        "code.execute", code="print(open('/proc/self/oom_score_adj').read().strip())"
    )
    assert reply.data["stdout"] == "1000\n"
