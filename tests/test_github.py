"""CI-native output, through the real CLI: GitHub Actions' workflow commands (groups, annotations),
the job summary and step outputs, and `plan --format markdown`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ltxflow.cli import main
from ltxflow.github import command, output_lines
from ltxflow.progress import GithubReporter

from conftest import write_wav
from test_build import make_project
from test_invalid_corpus import CORPUS, corpus_dir  # noqa: F401 - the fixture, shared

LTXFLOW = Path(sys.executable).parent / "ltxflow"
COMMAND = re.compile(r"::(?P<name>[a-z-]+)(?: (?P<props>[^:]*))?::(?P<message>.*)\Z")
TEXT_ERROR = re.compile(r"(?P<file>[^:]+)(?::(?P<line>\d+))?(?::(?P<col>\d+))?: ")


def unescape(value: str) -> str:
    for code, char in (("%0A", "\n"), ("%0D", "\r"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        value = value.replace(code, char)
    return value


def commands(stdout: str, name: str | None = None) -> list[tuple[str, dict[str, str], str]]:
    """The workflow commands on stdout: (name, properties, message), unescaped."""
    out = []
    for line in stdout.splitlines():
        m = COMMAND.match(line)
        if m and (name is None or m["name"] == name):
            props = dict(p.split("=", 1) for p in m["props"].split(",")) if m["props"] else {}
            out.append((m["name"], {k: unescape(v) for k, v in props.items()}, unescape(m["message"])))
    return out


def plain_markdown(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT's name=value lines and name<<DELIMITER blocks (later values win)."""
    out, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            name, delimiter = line.split("<<", 1)
            value = []
            for more in lines:
                if more == delimiter:
                    break
                value.append(more)
            out[name] = "\n".join(value)
        else:
            name, value = line.split("=", 1)
            out[name] = value
    return out


def ltx(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI as a runner runs it: none of this machine's GITHUB_* variables, only `env`'s."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**base, "LTXFLOW_CACHE_DIR": str(cwd / "cache"), **(env or {})})


@pytest.fixture
def no_github(monkeypatch):
    for name in [k for k in os.environ if k.startswith("GITHUB_")]:
        monkeypatch.delenv(name)


# -- escaping ---------------------------------------------------------------------------------------

def test_escaping_of_message_and_properties():
    line = command("warning", "50% done,\r\nnext: a::b", title="ltxflow: a,b:c%\nd", file="x.yaml", line=None)
    assert line == "::warning title=ltxflow%3A a%2Cb%3Ac%25%0Ad,file=x.yaml::50%25 done,%0D%0Anext: a::b"
    # Other control characters are written out as the project does elsewhere (errors.printable).
    assert command("error", "a\x1b[31mb\u202e") == "::error::a\\x1b[31mb\\u202e"
    assert output_lines({"n": 3, "path": "a\nb"}).startswith("n=3\npath<<ghadelimiter_")


def test_a_warning_names_its_line_and_escapes_it():
    out = io.StringIO()
    reporter = GithubReporter(out, project="my,song.yaml", workspace=None)
    reporter.event("warning", message="my,song.yaml:2:8: audio: 50% louder,\nthen: quieter")
    reporter.event("warning", chunk="intro.0", message="::add-mask::x\n::error::y")
    lines = out.getvalue().splitlines()
    assert "::warning file=my%2Csong.yaml,line=2,col=8,title=ltxflow::audio: 50%25 louder,%0Athen: quieter" in lines
    assert "::warning title=ltxflow%3A intro.0::::add-mask::x%0A::error::y" in lines
    # The text lines of a server's message never start a command: only ltxflow's own do.
    assert [ln for ln in lines if ln.lstrip().startswith("::")] == [ln for ln in lines if ln.startswith("::warning ")]
    assert "    \\x3a:error::y" in lines


def test_groups_close_when_a_build_stops_and_quiet_has_none():
    started = dict(project="p", backend="test", jobs=1, chunks=2, to_render=2, cached=0, output="o.mp4")
    out = io.StringIO()
    reporter = GithubReporter(out)
    reporter.event("build_started", **started)
    reporter.event("chunk_started", chunk="a.0")
    reporter.close()  # interrupted: no build_done
    assert groups(out.getvalue()) == ["chunks: 2 to render, 0 cached"]
    out = io.StringIO()
    reporter = GithubReporter(out, quiet=True)
    reporter.event("build_started", **started)
    reporter.event("chunk_failed", chunk="a.0", error="no")
    reporter.close()
    assert [name for name, _, _ in commands(out.getvalue())] == ["error"]


def test_a_warning_through_the_cli_has_the_project_file_and_escaped_text(tmp_path):
    write_wav(tmp_path / "media" / "a%,b:c.wav", 4.0, rate=96000)
    project = tmp_path / "my,song:1.yaml"
    project.write_text("version: 1\naudio: media/a%,b:c.wav\nscenes:\n  - id: a\n    prompt: p\n")
    r = ltx("validate", project.name, cwd=tmp_path, env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    raw = [ln for ln in r.stdout.splitlines() if ln.startswith("::warning")]
    assert raw and raw[0].startswith("::warning file=my%2Csong%3A1.yaml,line=2,col=1,title=ltxflow::audio: "
                                     "media/a%25,b:c.wav: resampled from 96000 Hz"), raw
    (_, props, message), = commands(r.stdout, "warning")
    assert props == {"file": project.name, "line": "2", "col": "1", "title": "ltxflow"}
    assert f"{project.name}:2:1: {message}" in r.stderr  # the same warning as the text line


def test_a_field_with_percent_comma_colon_and_newline(tmp_path, no_github):
    write_wav(tmp_path / "media" / "song.wav", 4.0)
    project = tmp_path / "p.yaml"
    project.write_text('version: 1\naudio: media/song.wav\n"50%, a:b\\nc": 1\nscenes:\n  - id: a\n    prompt: p\n')
    r = ltx("validate", str(project), "--log-format", "github", cwd=tmp_path)
    assert r.returncode == 2
    line, = [ln for ln in r.stdout.splitlines() if ln.startswith("::error")]
    assert line == "::error file=p.yaml,line=3,col=1,title=ltxflow%3A 50%25%2C a%3Ab%0Ac::unknown key '50%25, a:b%0Ac'"
    assert r.stderr.startswith("p.yaml:3:1: 50%, a:b\\nc: unknown key")  # one line of text


# -- validation problems as annotations -----------------------------------------------------------------

def text_places(err: str) -> list[tuple[str, str | None, str | None]]:
    lines = err.splitlines()[:-1]  # the last counts them
    return [(m["file"], m["line"], m["col"]) for m in map(TEXT_ERROR.match, lines) if m] if lines else []


@pytest.mark.parametrize("case", CORPUS, ids=lambda p: p.stem)
def test_annotations_point_where_the_text_errors_do(case, corpus_dir, capsys, monkeypatch):  # noqa: F811
    target = corpus_dir.root / case.name
    shutil.copy(case, target)
    workspace = corpus_dir.root.parent
    monkeypatch.setenv("GITHUB_WORKSPACE", str(workspace))
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert main(["validate", str(target), "--log-format", "github"]) == 2
    out, err = capsys.readouterr()
    places = text_places(err)
    assert places and len(places) == len(err.splitlines()) - 1, err
    errors = commands(out, "error")
    assert len(errors) == len(places), out
    for (file, line, col), (_, props, message) in zip(places, errors):
        assert (str(workspace / props["file"]), props.get("line"), props.get("col")) == (file, line, col), out
        assert not Path(props["file"]).is_absolute()  # inside the workspace: relative, as on a diff
        assert props["title"].startswith("ltxflow")
    # Each text line holds its annotation's field and (but for escaping) its message.
    for text, (_, props, message) in zip(err.splitlines(), errors):
        field = props["title"].removeprefix("ltxflow").removeprefix(": ")
        assert (f": {field}: " in text) if field else True, (text, props)
        assert "\n" in message or "\\" in text or message in text, (text, message)


def test_outside_the_workspace_a_file_is_named_as_given(corpus_dir, capsys, monkeypatch, tmp_path):  # noqa: F811
    case = CORPUS[0]
    target = corpus_dir.root / case.name
    shutil.copy(case, target)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))  # not where the project is
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # the default format there: github
    assert main(["validate", str(target)]) == 2
    out, err = capsys.readouterr()
    assert [props["file"] for _, props, _ in commands(out, "error")] == [f for f, _, _ in text_places(err)]
    assert main(["validate", str(target), "--log-format", "text"]) == 2
    assert capsys.readouterr().out == ""


# -- build ----------------------------------------------------------------------------------------------

def groups(stdout: str) -> list[str]:
    """The groups' names, checking they open and close in turn, none inside another."""
    names, open_ = [], None
    for name, _, message in commands(stdout):
        if name == "group":
            assert open_ is None, f"group {message!r} opened inside {open_!r}"
            open_ = message
            names.append(message)
        elif name == "endgroup":
            assert open_ is not None, "endgroup with no group open"
            open_ = None
    assert open_ is None, f"group {open_!r} never closed"
    return names


def test_build_in_github_actions(tmp_path):
    project = make_project(tmp_path)
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output), "GITHUB_WORKSPACE": str(tmp_path)}
    r = ltx("build", project.name, "--backend", "test", "--log-format", "github", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""  # the log is on stdout, where the runner reads the commands
    done = [ln for ln in r.stdout.splitlines() if " done " in ln]
    assert groups(r.stdout) == [f"chunks: {len(done)} to render, 0 cached", "stitch", "report"]
    assert not commands(r.stdout, "error") and not commands(r.stdout, "warning")

    out = outputs(output.read_text())
    video = tmp_path / "out" / "video.mp4"
    assert Path(out["video"]) == video and video.is_file()
    assert Path(out["report"]).is_file() and Path(out["contact_sheet"]).is_file()
    assert (int(out["rendered"]), int(out["cached"]), int(out["failed"]), int(out["skipped"])) == (len(done), 0, 0, 0)
    assert float(out["cost_usd"]) == 0.0
    assert r.stdout.splitlines()[-1] == str(video)

    text = plain_markdown(summary.read_text())
    assert text.startswith("### ltxflow build: song\n")
    assert f"**Built** {video}: {len(done)} rendered, 0 cached, 0 failed, 0 skipped; $0.00 spent" in text
    chunks = [c["id"] for c in json.loads(ltx("plan", project.name, "--json", cwd=tmp_path).stdout)["chunks"]]
    # "[ 1.2s] done intro.0 in 0.3s (1/10)"
    assert sorted(re.search(r" done (\S+) in ", ln)[1] for ln in done) == sorted(chunks)
    rows = re.findall(r"^\| (\S+) \| rendered \| \$0\.00 \| [\d.]+ \|$", text, re.MULTILINE)
    assert rows == chunks  # in plan order, whichever finished first
    assert f"Report {out['report']}; contact sheet {out['contact_sheet']}" in text

    # Unchanged, with GITHUB_ACTIONS=true and no --log-format: github by default; all cached.
    r = ltx("build", project.name, "--backend", "test", cwd=tmp_path, env={**env, "GITHUB_ACTIONS": "true"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert groups(r.stdout)[0] == f"chunks: 0 to render, {len(done)} cached"
    again = outputs(output.read_text())
    assert (again["video"], again["rendered"], again["cached"], again["failed"]) == \
        (out["video"], "0", str(len(done)), "0")
    last = plain_markdown(summary.read_text()).split("### ltxflow build: ")[-1]
    cached, = [ln.removeprefix("Cached: ") for ln in last.splitlines() if ln.startswith("Cached: ")]
    assert cached.split(", ") == chunks and "| rendered |" not in last

    # Without GITHUB_ACTIONS: the text format, whose stdout is the video's path alone.
    r = ltx("build", project.name, "--backend", "test", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == f"{video}\n" and "::" not in r.stderr

    # A failing chunk: an error annotation, the counts, a summary that says so.
    project.write_text(project.read_text().replace("the verse, chained", "the verse, newly chained"))
    failing = next(c for c in chunks if c.startswith("verse."))
    r = ltx("build", project.name, "--backend", "test", "--log-format", "github", cwd=tmp_path,
            env={**env, "LTXFLOW_TEST_BACKEND": f"fail={failing}"})
    assert r.returncode == 1
    groups(r.stdout)
    (_, props, message), = commands(r.stdout, "error")
    assert props == {"title": f"ltxflow: {failing} failed"} and "simulated failure" in message
    out = outputs(output.read_text())
    assert out["failed"] == "1" and int(out["skipped"]) >= 0 and out["video"] == str(video)  # the earlier build's
    last = plain_markdown(summary.read_text()).split("### ltxflow build: ")[-1]
    assert "**Build failed**: " in last and f"| {failing} | failed: {failing}: simulated failure |" in last


# -- plan --format markdown -------------------------------------------------------------------------------

def test_plan_markdown_and_its_summary_and_outputs(tmp_path):
    project = make_project(tmp_path)
    plan = json.loads(ltx("plan", project.name, "--backend", "fal", "--json", cwd=tmp_path).stdout)
    assert json.loads(ltx("plan", project.name, "--backend", "fal", "--format", "json", cwd=tmp_path).stdout) == plan
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    r = ltx("plan", project.name, "--backend", "fal", "--format", "markdown", cwd=tmp_path,
            env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)})
    assert r.returncode == 0, r.stderr
    assert summary.read_text() == r.stdout + "\n"  # the same Markdown, appended
    text = plain_markdown(r.stdout)
    assert text.startswith("### ltxflow plan: song\n")
    rows = [ln.split(" | ") for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| scene")]
    assert [(row[0][2:], row[1], row[5]) for row in rows] == [(c["scene"], c["id"], c["status"])
                                                               for c in plan["chunks"]]
    assert [row[6].rstrip(" |") for row in rows] == [
        f"${c['cost_usd']:,.2f}" if c["cost_usd"] >= 0.01 else f"${c['cost_usd']:.4f}" for c in plan["chunks"]]
    totals = plan["totals"]
    now = f"${totals['cost_now_usd']:,.2f}"
    assert f"- to render now: {totals['to_render']} of {totals['chunks']} chunks, {now}" in text
    assert f"- whole video: {totals['chunks']} chunks, ${totals['cost_usd']:,.2f}" in text
    assert outputs(output.read_text()) == {"cost_now_usd": str(totals["cost_now_usd"]),
                                           "to_render": str(totals["to_render"])}
