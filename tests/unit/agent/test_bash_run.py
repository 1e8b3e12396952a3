"""`bash.run`: one persistent shell, robust to whatever the command text is."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .harness import Agent, AgentClient


def test_cd_and_export_persist_between_calls(client: AgentClient, tmp_path: Path) -> None:
    first = client.run(f"cd {tmp_path} && export SBX_FOO=persisted")
    second = client.run("pwd; echo $SBX_FOO")

    assert first.data["cwd"] == str(tmp_path)
    assert second.data["stdout"] == f"{tmp_path}\npersisted\n"
    assert second.data["cwd"] == str(tmp_path)


def test_first_cwd_is_the_home_directory(agent: Agent) -> None:
    reply = agent.client.run("pwd")

    assert reply.data["stdout"] == f"{agent.home}\n"
    assert reply.data["cwd"] == str(agent.home)


def test_stdout_and_stderr_are_separate_with_exit_code(client: AgentClient) -> None:
    reply = client.run("echo out; echo err >&2; sh -c 'exit 7'")

    assert reply.status == 200
    assert reply.data == {
        "stdout": "out\n",
        "stderr": "err\n",
        "exit_code": 7,
        "return_code": 7,
        "cwd": reply.data["cwd"],
        "truncated": False,
        "shell_restarted": False,
        "oom_killed": False,
    }


def test_output_without_trailing_newline_is_exact(client: AgentClient) -> None:
    reply = client.run("printf abc; printf xyz >&2")

    assert reply.data["stdout"] == "abc"
    assert reply.data["stderr"] == "xyz"


def test_multiline_command_with_heredoc(client: AgentClient) -> None:
    reply = client.run("cat <<'EOF'\nline 1\n'unbalanced\nEOF\nfor i in 1 2; do\n echo $i\ndone")

    assert reply.data["stdout"] == "line 1\n'unbalanced\n1\n2\n"


def test_undecodable_output_is_replaced(client: AgentClient) -> None:
    reply = client.run(r"printf 'a\377b'")

    assert reply.data["stdout"] == "a\ufffdb"


def test_cat_without_input_does_not_hang(client: AgentClient) -> None:
    # A command left waiting for input would end in the timeout (504), not here.
    reply = client.run("cat; read line; echo after", timeout=5)

    assert reply.data["stdout"] == "after\n"


def test_unbalanced_quote_fails_and_the_next_call_works(client: AgentClient) -> None:
    client.run("export SBX_KEEP=1")

    broken = client.run("echo 'never closed")
    after = client.run("echo fine $SBX_KEEP")

    assert broken.status == 200
    assert broken.data["exit_code"] != 0
    assert "unexpected EOF" in broken.data["stderr"]
    assert broken.data["stderr"].startswith("bash: line 1: "), "no agent file names leak"
    assert after.data["stdout"] == "fine 1\n"
    assert after.data["shell_restarted"] is False


def test_per_call_cwd_and_env_do_not_persist(agent: Agent, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    scoped = agent.client.run(
        "pwd; echo $SBX_ONCE; cd /", cwd=str(elsewhere), env={"SBX_ONCE": "it's $set"}
    )
    after = agent.client.run('pwd; echo "[$SBX_ONCE]"')

    assert scoped.data["stdout"] == f"{elsewhere}\nit's $set\n"
    assert scoped.data["cwd"] == str(agent.home)  # the persistent shell's cwd
    assert after.data["stdout"] == f"{agent.home}\n[]\n"


def test_missing_cwd_is_a_failed_command_not_an_error(client: AgentClient) -> None:
    reply = client.run("echo never", cwd="/no/such/dir")

    assert reply.status == 200
    assert reply.data["exit_code"] != 0
    assert reply.data["stdout"] == ""
    assert "No such file or directory" in reply.data["stderr"]


def test_invalid_env_name_is_invalid_params(client: AgentClient) -> None:
    reply = client.run("true", env={"NOT VALID": "x"})

    assert reply.status == 400
    assert reply.error["field"] == "env"


def test_non_positive_timeout_is_invalid_params(client: AgentClient) -> None:
    reply = client.run("true", timeout=0)

    assert reply.status == 400
    assert reply.error["field"] == "timeout"


def test_timeout_kills_the_command_and_keeps_the_shell(client: AgentClient, tmp_path: Path) -> None:
    client.run(f"cd {tmp_path}; export SBX_BEFORE=kept")

    reply = client.run("echo before; echo oops >&2; sleep 30; echo after", timeout=1)
    after = client.run("pwd; echo $SBX_BEFORE")

    assert reply.status == 504
    assert reply.error["kind"] == "timeout"
    assert "1s" in reply.error["message"]
    data = reply.error["data"]
    assert data["stdout"].startswith("before\n")
    assert "after" not in data["stdout"]
    assert data["stderr"].startswith("oops\n")
    assert data["exit_code"] is None
    assert data["cwd"] == str(tmp_path)
    assert data["shell_restarted"] is False
    assert after.data["stdout"] == f"{tmp_path}\nkept\n"


def test_builtin_loop_is_stopped_without_losing_the_shell(client: AgentClient) -> None:
    client.run("SBX_LOCAL=unexported; sbx_fn() { echo fn; }")

    reply = client.run("echo looping; while :; do :; done; echo after", timeout=0.3)
    after = client.run("echo $SBX_LOCAL; sbx_fn; trap -p DEBUG; shopt -q extdebug || echo off")

    assert reply.status == 504
    assert reply.error["data"]["stdout"] == "looping\n"
    assert reply.error["data"]["shell_restarted"] is False
    # The same shell: unexported state survives, and the abort machinery is gone.
    assert after.data["stdout"] == "unexported\nfn\noff\n"


def test_timeout_spares_background_jobs_of_earlier_commands(client: AgentClient) -> None:
    server_pid = client.run("sleep 30 & echo $!").data["stdout"].strip()
    time.sleep(0.05)  # start times are in 10 ms ticks

    timed_out = client.run("sleep 30 & sleep 30", timeout=0.3)
    # The killed job leaves bash's job table once bash reaps it, which a loaded
    # machine may delay a little: ask until it has (or 5 s went by).
    check = f"kill -0 {server_pid} && echo alive; jobs -r | wc -l"
    deadline = time.monotonic() + 5
    alive = client.run(check)
    while alive.data["stdout"] != "alive\n1\n" and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = client.run(check)

    assert timed_out.status == 504
    # The earlier job lives on; the timed-out command's own background job does not.
    assert alive.data["stdout"] == "alive\n1\n"


def test_rest_of_a_function_is_skipped_after_a_timeout(client: AgentClient) -> None:
    reply = client.run("f() { sleep 30; echo in-f; }; f; echo after-f", timeout=0.3)

    assert reply.status == 504
    assert "after" not in reply.error["data"]["stdout"]
    assert "in-f" not in reply.error["data"]["stdout"]
    assert client.run("echo next").data["stdout"] == "next\n"


def test_stuck_shell_is_replaced_with_its_state_restored(
    client: AgentClient, tmp_path: Path
) -> None:
    client.run(f"cd {tmp_path}; export SBX_BEFORE='a b'; unset SBX_TEST_INHERITED")

    # Ignoring the interrupt leaves the agent no way but to kill the shell.
    reply = client.run("trap '' USR1; echo looping; while :; do :; done", timeout=0.5)
    after = client.run('pwd; echo "$SBX_BEFORE"; echo "[${SBX_TEST_INHERITED-unset}]"')

    assert reply.status == 504
    assert reply.error["data"]["stdout"] == "looping\n"
    assert reply.error["data"]["shell_restarted"] is True
    assert reply.error["data"]["cwd"] == str(tmp_path)
    assert after.data["stdout"] == f"{tmp_path}\na b\n[unset]\n"
    assert after.data["shell_restarted"] is False
    # The new shell can be interrupted again.
    assert client.run("while :; do :; done", timeout=0.3).error["data"]["shell_restarted"] is False


def test_exit_restarts_the_shell_transparently(client: AgentClient, tmp_path: Path) -> None:
    client.run(f"cd {tmp_path}; export SBX_BEFORE=kept")

    reply = client.run("echo bye; exit 3")
    after = client.run("pwd; echo $SBX_BEFORE")

    assert reply.status == 200
    assert reply.data["exit_code"] == 3
    assert reply.data["stdout"] == "bye\n"
    assert reply.data["shell_restarted"] is True
    assert after.data["stdout"] == f"{tmp_path}\nkept\n"
    assert after.data["shell_restarted"] is False


def test_shell_that_closes_its_stdout_is_replaced(client: AgentClient, tmp_path: Path) -> None:
    client.run(f"cd {tmp_path}")

    reply = client.run("echo gone; exec >&-", timeout=5)
    after = client.run("pwd")

    assert reply.status == 200
    assert reply.data["stdout"] == "gone\n"
    assert reply.data["shell_restarted"] is True
    assert after.data["stdout"] == f"{tmp_path}\n"


def test_background_job_holding_the_pipes_does_not_block(client: AgentClient) -> None:
    # The job outlives the timeout: a call that waited for the pipes to close would be 504.
    reply = client.run("sleep 30 & echo started", timeout=5)

    assert reply.data["stdout"] == "started\n"
    assert reply.data["exit_code"] == 0


def test_output_over_the_limit_is_truncated_without_hanging(small_agent: Agent) -> None:
    # Output nobody reads must not fill the pipe and stall the command into its timeout.
    reply = small_agent.client.run(
        "head -c 5000000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2",
        timeout=20,
    )

    assert reply.data["stdout"] == "a" * 1000
    assert reply.data["stderr"] == "b" * 1000
    assert reply.data["truncated"] is True
    assert reply.data["exit_code"] == 0


def test_output_at_the_limit_is_not_truncated(small_agent: Agent) -> None:
    reply = small_agent.client.run("head -c 1000 /dev/zero | tr '\\0' a")

    assert reply.data["stdout"] == "a" * 1000
    assert reply.data["truncated"] is False


def test_token_is_not_in_the_shell_environment(agent: Agent) -> None:
    reply = agent.client.run("env | grep -c SANDBOX_AGENT_TOKEN; echo $SBX_TEST_INHERITED")

    assert reply.data["stdout"] == "0\ninherited\n"
    assert agent.token not in agent.client.run("env; set").data["stdout"]


def test_parallel_calls_both_complete_one_at_a_time(agent: Agent) -> None:
    replies = {}
    log = agent.home / "order.log"

    def call(name: str) -> None:
        client = AgentClient(agent.url, agent.token)
        try:
            replies[name] = client.run(
                f"echo start-{name} >> {log}; sleep 0.2; echo {name}; echo end-{name} >> {log}"
            )
        finally:
            client.close()

    threads = [threading.Thread(target=call, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert replies["one"].data["stdout"] == "one\n"
    assert replies["two"].data["stdout"] == "two\n"
    # One shell: the second command starts after the first ended, never inside it.
    assert log.read_text() in (
        "start-one\nend-one\nstart-two\nend-two\n",
        "start-two\nend-two\nstart-one\nend-one\n",
    )


def test_commands_are_the_oom_killers_first_pick(client: AgentClient) -> None:
    reply = client.call("bash.run", command="cat /proc/self/oom_score_adj")
    assert reply.data["stdout"] == "1000\n"
