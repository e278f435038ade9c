"""`rehearse --report`: the rehearsal as one self-contained HTML timeline.

One small rehearsal on PostgreSQL (a project in a subprocess, as in tests/db/test_rehearse.py)
serves every test: a step that locks two tables and runs SQL with `<` in it, whose new column
old code cannot insert without, then a step that fails. The page is checked as text, then as
headless Chromium parses and paints it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _project import Project, judged_after_initial, migration, pg_settings

from django_rollout.api import Report
from django_rollout.findings import Finding, Location, Severity
from django_rollout.reporting.html import render

SQL_WITH_MARKUP = "UPDATE vault_token SET note = '<b>x</b>' WHERE id < 0"
TOKEN = """\
migrations.CreateModel(
    "Token",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("name", models.CharField(max_length=40)),
        ("note", models.TextField(null=True)),
    ],
),
"""
TAG = f"""\
migrations.CreateModel(
    "Tag",
    [
        ("id", models.BigAutoField(primary_key=True)),
        ("token", models.ForeignKey("vault.Token", on_delete=models.CASCADE)),
    ],
),
migrations.AddField("token", "uses", models.IntegerField(default=0)),
migrations.RunSQL({SQL_WITH_MARKUP!r}, migrations.RunSQL.noop),
"""
# Every existing row gets '' and the unique index fails: 23505.
CHECKSUM = (
    'migrations.AddField("token", "checksum", models.CharField(max_length=64, unique=True,'
    ' blank=True, default=""))'
)
WIDTH, HEIGHT = 1400, 900


@dataclass(frozen=True)
class Rehearsed:
    doc: dict[str, Any]
    report: Report
    page: Path  # written by the CLI's --report
    project: Project


def _project(root: Path) -> Project:
    project = Project(root)
    project.app(
        "vault",
        {
            "0001_initial": migration(TOKEN),
            "0002_tag": migration(TAG, '[("vault", "0001_initial")]'),
            "0003_checksum": migration(CHECKSUM, '[("vault", "0002_tag")]'),
        },
    )
    project.configure(
        ["vault"],
        database=pg_settings(),
        extra=judged_after_initial("vault"),
    )
    return project


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> Rehearsed:
    root = tmp_path_factory.mktemp("html")
    project = _project(root)
    page = root / "out" / "rehearsal.html"
    page.parent.mkdir()
    result = project.run(
        "--settings", project.settings, "rehearse", "--rows", "30", "--format", "json",
        "--report", str(page),
    )  # fmt: skip
    assert result.status == 1, result.stderr
    doc = result.json()
    return Rehearsed(doc, report_from_json(doc), page, project)


def report_from_json(doc: dict[str, Any]) -> Report:
    """Rebuild the api Report of a rehearsal from its JSON envelope."""
    findings = tuple(
        Finding(
            rule=f["rule"],
            name=f["name"],
            severity=Severity.parse(f["severity"]),
            message=f["message"],
            help=f["help"],
            app_label=f["app_label"],
            migration=f["migration"],
            operation_index=f["operation_index"],
            operation=f["operation"],
            location=Location(f["path"], f["line"]),
            confirmed=f.get("confirmed"),
            observed_error=f.get("observed_error"),
            code_version=f.get("code_version"),
        )
        for f in doc["findings"]
    )
    keys = ("verdict", "scratch", "steps", "traffic", "timings_s", "unseeded_tables")
    return Report(
        command=doc["command"],
        s0_source=doc["s0_source"],
        unit=tuple((a, m) for a, m in doc["unit"]),
        findings=findings,
        extra={k: doc[k] for k in keys if k in doc},
    )


class Elements(HTMLParser):
    """Collect every element's attributes, and its text under its nearest classed element."""

    VOID = frozenset({"meta", "br", "img", "input", "hr", "link", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        if tag not in self.VOID:
            self._open.append((tag, found.get("class", "")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        classed = next((css for _, css in reversed(self._open) if css), "")
        self.text.setdefault(classed, []).append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a.get("class", "").split()]


def _parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def _locks(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (lock["relation"], lock["mode"])
        for step in doc["steps"]
        for statement in step["statements"]
        for lock in statement["locks"]
    ]


def test_page_is_self_contained(rehearsed: Rehearsed) -> None:
    page = render(rehearsed.report)
    for outside in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert outside not in page
    assert page.startswith("<!DOCTYPE html>")


def test_draws_one_lock_bar_per_lock_each_statement_took(rehearsed: Rehearsed) -> None:
    locks = _locks(rehearsed.doc)
    assert len({relation for relation, _ in locks}) >= 2, "the project locks two tables"
    bars = _parse(render(rehearsed.report)).with_class("lock-bar")
    assert sorted((b["data-relation"], b["data-mode"]) for b in bars) == sorted(locks)
    assert {b["data-relation"] for b in bars} == {relation for relation, _ in locks}


def test_marks_the_failed_step_with_its_sqlstate_and_message(rehearsed: Rehearsed) -> None:
    [failed] = [s for s in rehearsed.doc["steps"] if s["status"] == "failed"]
    assert failed["migration"] == "0003_checksum" and failed["error"]["sqlstate"] == "23505"
    parsed = _parse(render(rehearsed.report))
    assert len(parsed.with_class("failed")) >= 2  # its column and its label
    label = "".join(parsed.text["step-label failed"])
    assert "FAILED 23505" in label and "vault.0003_checksum" in label
    problems = render(rehearsed.report).split("Where production would stall or fail")[1]
    assert "could not create unique index" in problems


def test_marks_errors_old_code_hit(rehearsed: Rehearsed) -> None:
    parsed = _parse(render(rehearsed.report))
    assert parsed.with_class("traffic-error"), "old code inserting without `uses` fails"
    assert any("23502" in t for t in parsed.text.get("traffic-error", []))


def test_escapes_sql_and_messages(rehearsed: Rehearsed) -> None:
    page = render(rehearsed.report)
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    # Parsed back, the statement's tooltip is the SQL as it ran.
    assert any(SQL_WITH_MARKUP in t for t in _parse(page).text.get("statement", []))


def _one_step(**statement: Any) -> Report:
    """A rehearsal report of one step with one statement, for what a small run rarely shows."""
    row = {"sql": "SELECT 1", "started_ms": 5.0, "duration_ms": 120.0, "locks": []}
    row |= statement
    step = {"app_label": "shop", "migration": "0002_x", "status": "applied", "error": None}
    return Report(
        command="rehearse",
        s0_source="the state just before each migration",
        unit=(("shop", "0002_x"),),
        findings=(),
        extra={"verdict": "safe", "steps": [{**step, "statements": [row]}]},
    )


def test_marks_traffic_waiting_behind_a_statement() -> None:
    lock = {"relation": "shop_order", "mode": "AccessExclusiveLock", "held_ms": 130.0}
    page = render(_one_step(traffic_wait_ms=110.0, locks=[lock]))
    parsed = _parse(page)
    assert len(parsed.with_class("wait")) == 1 and parsed.with_class("wait-stripe")
    assert "waited 110 ms" in "".join(parsed.text.get("wait", []))
    assert "traffic waited 110 ms behind" in page.split("Where production")[1]


def test_escapes_table_names_inside_attributes() -> None:
    odd = 'a"<b>&c'
    lock = {"relation": odd, "mode": "ShareLock", "held_ms": 1.0}
    page = render(_one_step(locks=[lock], sql=f'CREATE INDEX ON "{odd}"'))
    assert odd not in page
    [bar] = _parse(page).with_class("lock-bar")
    assert bar["data-relation"] == odd and bar["data-mode"] == "ShareLock"


def test_says_so_when_no_lock_was_traced() -> None:
    page = render(_one_step(traffic_wait_ms=None))  # as SQLite reports it
    assert "no lock was traced" in page and 'class="lock-bar' not in page
    assert "nothing: no failure, no error, no wait" in page


def test_refuses_a_report_that_is_not_a_rehearsal(rehearsed: Rehearsed) -> None:
    with pytest.raises(ValueError, match="not 'check'"):
        render(dataclasses.replace(rehearsed.report, command="check"))


def test_report_flag_writes_the_page_besides_the_json(rehearsed: Rehearsed) -> None:
    page = rehearsed.page.read_text(encoding="utf-8")
    assert rehearsed.doc["command"] == "rehearse"  # stdout kept its own format
    bars = _parse(page).with_class("lock-bar")
    assert len(bars) == len(_locks(rehearsed.doc))


@pytest.mark.parametrize("where", ["missing/dir/rehearsal.html", "."], ids=["no-dir", "a-dir"])
def test_unwritable_report_path_is_one_line_and_exit_2(
    rehearsed: Rehearsed, tmp_path: Path, where: str
) -> None:
    target = tmp_path / where
    project = rehearsed.project
    result = project.run("--settings", project.settings, "rehearse", "--report", str(target))
    assert result.status == 2, result.stdout
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if found is None:
        if os.environ.get("ROLLOUT_REQUIRE_BROWSER") == "1":
            pytest.fail("ROLLOUT_REQUIRE_BROWSER=1 but no chromium: apt-get install chromium")
        pytest.skip("no chromium on this machine (ROLLOUT_REQUIRE_BROWSER=1 makes this fail)")
    return found


@pytest.mark.parametrize("required", ["1", ""])
def test_missing_chromium_fails_only_when_required(
    monkeypatch: pytest.MonkeyPatch, required: str
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("ROLLOUT_REQUIRE_BROWSER", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="chromium"):
        _chromium()


@pytest.fixture(scope="module")
def browser(
    rehearsed: Rehearsed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Return Chromium and the page rendered from the report, on disk."""
    binary = _chromium()
    root = tmp_path_factory.mktemp("browser")
    page = root / "rehearsal.html"
    page.write_text(render(rehearsed.report), encoding="utf-8")
    yield binary, page


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_chromium_paints_the_page(browser: tuple[str, Path], tmp_path: Path) -> None:
    binary, page = browser
    png = tmp_path / "rehearsal.png"
    run = _run_chromium(
        binary,
        tmp_path / "profile",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.as_uri(),
    )
    assert run.returncode == 0 and png.exists(), run.stderr.decode(errors="replace")[-2000:]
    width, height, pixels = _decode_png(png.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(set(pixels)) > 20, "the screenshot is (nearly) one flat colour"
    # The failed step's column, its label and the verdict are red on screen.
    red = sum(1 for r, g, b in pixels if r > 180 and g < 80 and b < 80)
    assert red > 500
    shutil.copy(png, page.with_suffix(".png"))  # kept beside the page, for a person to see


def test_chromium_dom_has_one_lock_row_per_locked_table(
    browser: tuple[str, Path], rehearsed: Rehearsed, tmp_path: Path
) -> None:
    binary, page = browser
    run = _run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    dom = _parse(run.stdout.decode("utf-8"))
    bars = dom.with_class("lock-bar")
    locked = {relation for relation, _ in _locks(rehearsed.doc)}
    assert {b["data-relation"] for b in bars} == locked
    assert len(bars) == len(_locks(rehearsed.doc))
    names = {t for t in dom.text.get("row-name", [])}
    assert locked <= names, "each locked table has its row, named"


def _decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Return width, height and the RGB pixels of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    assert data[12:16] == b"IHDR" and depth == 8 and colour in (2, 6) and not interlace
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                near = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + near) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp))
        previous = line
    return width, height, pixels


def test_png_decoder_reads_a_known_image() -> None:
    """The screenshot check's decoder, on a 2x1 RGB image with the Sub filter."""
    raw = bytes([1, 200, 10, 10, 50, 0, 0])  # Sub: the second pixel is (250, 10, 10)
    ihdr = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    assert _decode_png(png) == (2, 1, [(200, 10, 10), (250, 10, 10)])


def test_json_envelope_round_trips_into_the_same_page(rehearsed: Rehearsed) -> None:
    """The helper that rebuilds the Report gives what the CLI drew (same bars, same marks)."""
    ours = _parse(render(rehearsed.report))
    cli = _parse(rehearsed.page.read_text(encoding="utf-8"))
    for css in ("lock-bar", "statement", "failed", "traffic-error", "wait"):
        assert len(ours.with_class(css)) == len(cli.with_class(css)), css


def test_names_a_statement_that_queued_behind_traffic() -> None:
    page = render(_one_step(sql="ALTER TABLE shop_order ADD x int", lock_wait_ms=640.4))
    problems = page.split("Where production")[1]
    assert "the migration waited 640 ms for locks traffic held" in problems
    assert "ALTER TABLE shop_order ADD x int" in problems
    # and the statement's own tooltip on the timeline
    [tip] = _parse(page).text["statement"]
    assert tip.endswith("ran 120.0 ms, of which it waited 640 ms for traffic's locks")


def test_a_sub_millisecond_queue_is_no_problem() -> None:
    page = render(_one_step(lock_wait_ms=0.4))
    assert "nothing: no failure, no error, no wait" in page
