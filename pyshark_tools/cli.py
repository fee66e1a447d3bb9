"""``tls-smtp-report``: the command line, a thin layer over ``analyze`` and the renderers."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import click

from . import __version__
from .core.schema import EXIT_UNREADABLE, EXIT_USAGE
from .engine.signals import install as install_signal_handlers
from .engine.tshark import DEFAULT_TIME_LIMIT
from .errors import Interrupted
from .sanitize import printable
from .wireshark.commands import wireshark

if TYPE_CHECKING:  # imported where used: --help starts without pandas, numpy, cryptography
    from rich.console import Console

    from .report import Report

#: the analyzer's default ports (``events.DEFAULT_PORTS``; tests check they agree)
DEFAULT_PORTS: tuple[int, ...] = (25, 587)

EXIT_CODES_HELP = """\b
Exit codes:
  0  nothing wrong found
  1  problems found (a finding of severity error or warning)
  2  usage error
  3  tshark missing or too old
  4  capture, key log or trust store unreadable (logs: no readable server log)
  5  internal error (a bug: one line; --debug shows the traceback)
  6  probe: could not connect
"""


class _Failure(click.ClickException):
    """A one-line error with one of the documented exit codes."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(printable(message))  # file names may hold any byte
        self.exit_code = code


class _DefaultGroup(click.Group):
    """``tls-smtp-report CAPTURE`` runs ``report``; ``follow`` and ``wireshark`` are named."""

    #: commands whose modules are imported only when named (start-up stays light)
    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "probe": ("pyshark_tools.probe.command", "probe_command")}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug anywhere before "--" (it is the group's, whatever the subcommand)
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            ctx.meta["debug"] = True
            args = [a for i, a in enumerate(args) if a != "--debug" or i >= end]
        if args and args[0] not in self.commands and args[0] not in self.lazy and \
                args[0] not in ("--help", "-h", "--version"):
            args = ["report", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    #: the one-line help ``--help`` lists for a lazy command (listing it must not import it)
    lazy_help: ClassVar[dict[str, str]] = {
        "probe": "Connect to HOST, present a client certificate, run SMTP up to RCPT (never "
                 "DATA), record the session as pcapng and report on it like a capture."}

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, lazy commands by their stored help (not imported for it)."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, click.Command(name, help=self.lazy_help[name])))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _c in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in rows])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            import importlib

            module, attribute = self.lazy[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        """The one place an unexpected exception becomes one line and exit code 5."""
        from .errors import EXIT_INTERNAL, OutputError, exit_code_for, internal_error_line

        install_signal_handlers()
        try:
            return super().invoke(ctx)
        except Interrupted as stop:
            click.echo(f"stopped by {stop.name}: child processes ended, temporary files "
                       "removed", err=True)
            ctx.exit(128 + stop.signum)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit,
                KeyboardInterrupt, _Failure):
            raise
        except OutputError as exc:
            raise _Failure(str(exc), exit_code_for(exc)) from None
        except Exception as exc:
            if ctx.meta.get("debug"):
                raise
            click.echo(f"Error: {internal_error_line(exc)}", err=True)
            ctx.exit(EXIT_INTERNAL)


def _output_target(output: str | None) -> Path | None:
    if output is None or output == "-":
        return None
    from .errors import OutputError
    from .render.output import check_target

    try:
        check_target(output)
    except OutputError as exc:
        raise _Failure(str(exc), EXIT_USAGE) from None
    return Path(output)


def _write(target: Path | None, text: str, styled: bool = False) -> None:
    """Write all or nothing (see ``output.write_report``). ``styled``: the text renderer
    decided on colours itself."""
    if target is None:
        # bytes: a file name that is not UTF-8 must not end the run (escaped, like -o does),
        # and click passes bytes through as they are (the renderer's colours included)
        click.echo(text.encode("utf-8", "backslashreplace"), nl=False)
        return
    from .errors import OutputError
    from .render.output import write_report

    try:
        write_report(target, text)
    except OutputError as exc:
        raise _Failure(str(exc), EXIT_USAGE) from None


def _check_networks(values: tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an IP address or network "
                                     "(e.g. 203.0.113.25 or 203.0.113.0/24)") from None
    return values


#: The interpreter's last garbage collections walk every object still alive, and with pandas,
#: numpy and cryptography loaded that took ~0.25 s of every run. Frozen objects are left to the
#: end of the process (atexit callbacks, ``weakref.finalize`` and open files' flushes still run).
atexit.register(gc.freeze)


def _import_analysis() -> None:
    """Import the analysis (pandas, numpy, cryptography) with the cyclic garbage collector
    paused, then freeze what the imports built: collections during the imports cost ~0.1 s
    and found nothing to free, and later ones need not walk the modules again. Nothing is
    done when the analysis is imported already (a notebook, the tests)."""
    if "pyshark_tools.pipeline" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        from . import pipeline  # noqa: F401  (imported for its side effect: loaded)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


#: Imports running in the background (:func:`_import_in_background`); a fork waits for them.
_BACKGROUND_IMPORTS: list[threading.Thread] = []


def _finish_background_imports() -> None:
    """Wait for the background imports: a forked child must not inherit a module half
    imported (its import lock would stay held by a thread the child does not have)."""
    while _BACKGROUND_IMPORTS:
        _BACKGROUND_IMPORTS.pop().join()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_finish_background_imports)


def _import_in_background(module: str) -> None:
    """Import ``module`` in a thread while the analysis runs. On a small capture the main
    thread mostly waits for tshark then, and the text renderer (rich) takes ~0.05 s to import
    that would otherwise come after it. A failure is left for the main thread's own import
    to report."""
    if module in sys.modules:
        return

    def load() -> None:
        import contextlib
        import importlib

        with contextlib.suppress(Exception):  # the main thread's import raises it again
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"import {module}")
    _BACKGROUND_IMPORTS.append(thread)
    thread.start()


def _run_analysis(capture: object, tshark_timeout: float | None = None,
                  **settings: object) -> Report:
    """``analyze`` with the command line's settings (``AnalysisOptions`` fields); input
    errors become one line and their exit code."""
    _import_analysis()
    from .engine.tshark import find_tshark
    from .errors import CaptureError, KeylogError, TrustStoreError, TsharkError, exit_code_for
    from .options import AnalysisOptions
    from .pipeline import analyze

    try:
        tshark = find_tshark(time_limit=tshark_timeout)
        return analyze(capture, AnalysisOptions(tshark=tshark, **settings))  # type: ignore[arg-type]
    except (TsharkError, CaptureError, KeylogError, TrustStoreError) as exc:
        raise _Failure(str(exc), exit_code_for(exc)) from None


capture_argument = click.argument(
    "capture", type=click.Path(dir_okay=True, path_type=str), metavar="CAPTURE"
)
keylog_option = click.option(
    "--keylog", type=click.Path(path_type=str), metavar="FILE",
    help="TLS key log (SSLKEYLOGFILE format) to decrypt TLS 1.3 handshakes and SMTP replies.",
)
port_option = click.option(
    "--port", "ports", type=click.IntRange(1, 65535), multiple=True, metavar="N",
    help="SMTP port to read (repeatable). Default: 25 and 587; 465 is read as implicit TLS.",
)
all_tls_option = click.option(
    "--all-tls", is_flag=True, help="Also report TLS conversations that are not SMTP.",
)
tshark_timeout_option = click.option(
    "--tshark-timeout", type=click.FloatRange(0), default=None, metavar="SECONDS",
    help=f"Time limit of each tshark pass: SECONDS plus 2 s per MiB of capture (default "
         f"{DEFAULT_TIME_LIMIT:.0f}; 0: none). A stopped tshark leaves a partial report "
         "marked incomplete.",
)


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="tls-smtp-report")
def main() -> None:
    """Did the sending mail server present its TLS client certificate?

    \b
    Examples:
      tls-smtp-report capture.pcapng
      tls-smtp-report capture.pcapng --expect-cert-name mail.contoso.com
      tls-smtp-report capture.pcapng --keylog sslkeys.log --format json -o report.json
      tls-smtp-report capture.pcapng --port 2525 --exo-only
      tls-smtp-report follow capture.pcapng --stream 3
      tls-smtp-report wireshark install
    """


@main.command("report", epilog=EXIT_CODES_HELP)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...",
                type=click.Path(dir_okay=True, path_type=str))
@keylog_option
@click.option("--expect-cert-name", metavar="NAME",
              help="The inbound connector's TlsSenderCertificateName (e.g. mail.contoso.com "
                   "or *.contoso.com): check the client certificate carries it.")
@click.option("--accepted-domain", "accepted_domains", multiple=True, metavar="D",
              help="An accepted domain of the tenant (repeatable): the certificate domain "
                   "must be one (relay rule).")
@click.option("--sender-ip", "sender_ips", multiple=True, metavar="CIDR",
              callback=lambda _ctx, _param, value: _check_networks(value),
              help="The connector's SenderIPAddresses (repeatable).")
@click.option("--trust-store", type=click.Path(path_type=str), metavar="PEM",
              help="PEM bundle of trusted roots instead of Mozilla's (certifi).")
@port_option
@all_tls_option
@click.option("--stream", "streams", type=click.IntRange(0), multiple=True, metavar="N",
              help="Only this TCP stream (tcp.stream in Wireshark; repeatable).")
@click.option("--exo-only", is_flag=True,
              help="Only conversations with Exchange Online (*.mail.protection.outlook.com).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv", "markdown",
                                                        "html"]),
              default="text", show_default=True)
@click.option("--table", type=click.Choice(["conversations", "certificates", "findings",
                                             "events", "log_sessions", "log_findings"]),
              default="conversations", show_default=True, help="Which table --format csv writes.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of the terminal.")
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, metavar="N",
              help="Shard conversations over N processes (default: all cores).")
@click.option("--no-prefilter", is_flag=True,
              help="Reference engine: one tshark pass over the whole capture (slower; the "
                   "fast engine gives the same report).")
@click.option("--no-native", is_flag=True,
              help="Fast engine without its native reader: tshark reads every SMTP "
                   "conversation's handshake (same report, slower).")
@click.option("--dask-scheduler", metavar="ADDR",
              help="Run the conversation shards on a Dask cluster (e.g. tcp://host:8786); "
                   "workers must see the same temporary folder (TMPDIR).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--log", "logs", multiple=True, metavar="PATH",
              type=click.Path(dir_okay=True, path_type=str),
              help="A mail server log (Exchange protocol log, Postfix, Exim; file, folder, "
                   "glob, .gz; repeatable) joined to the conversations by endpoints and time.")
@click.option("--log-tolerance", type=click.FloatRange(0), default=120.0, show_default=True,
              metavar="SECONDS", help="Clock skew allowed between the logs and the capture.")
@click.option("--log-format", type=click.Choice(["exchange", "postfix", "exim"]),
              help="Read every --log file as this format (default: recognised per file).")
@click.option("--details", is_flag=True,
              help="Text: every conversation and finding, also when there are more than 20 "
                   "(findings are then grouped by rule).")
@tshark_timeout_option
def report_command(captures: tuple[str, ...], keylog: str | None,
                   expect_cert_name: str | None,
                   accepted_domains: tuple[str, ...], sender_ips: tuple[str, ...],
                   trust_store: str | None, ports: tuple[int, ...], all_tls: bool,
                   streams: tuple[int, ...], exo_only: bool, fmt: str, table: str,
                   output: str | None, color: bool | None, jobs: int | None,
                   no_prefilter: bool, no_native: bool, dask_scheduler: str | None,
                   quiet: bool, logs: tuple[str, ...], log_tolerance: float,
                   log_format: str | None, details: bool = False,
                   tshark_timeout: float | None = None) -> None:
    """Report every SMTP conversation in CAPTURE: TLS, client certificate, findings.

    Several captures, a folder or a glob ('traces/*.pcapng') give one merged report.
    """
    if "-" in captures and len(captures) > 1:
        raise _Failure("'-' (a capture on standard input) cannot be mixed with other captures",
                       EXIT_USAGE)
    capture: str | list[str] = captures[0] if len(captures) == 1 else list(captures)
    target = _output_target(output)
    capture = _stdin_capture(capture) if capture == "-" else capture
    dask_client = _dask_client(dask_scheduler) if dask_scheduler else None
    from .engine.progress import ByteProgress
    from .engine.tshark import ask_version_early, forget_early_versions

    ask_version_early()  # tshark answers while the analysis is imported
    try:
        # one bar from reading to the rendered output (it is gone before the output is written)
        label = Path(capture).name if isinstance(capture, str) else f"{len(capture)} captures"
        with ByteProgress(label, enabled=False if quiet else None) as bar:
            _import_analysis()
            if fmt == "text":
                _import_in_background("pyshark_tools.render.text")
            result = _run_analysis(
                capture=capture, keylog=keylog, ports=ports or DEFAULT_PORTS,
                expect_cert_name=expect_cert_name, accepted_domains=accepted_domains,
                sender_ips=sender_ips, trust_store=trust_store, all_tls=all_tls,
                streams=streams or None, exo_only=exo_only, jobs=jobs,
                prefilter=not no_prefilter,
                dask_client=dask_client, progress=bar, native=not no_native,
                logs=list(logs) or None, log_tolerance=log_tolerance, log_format=log_format,
                tshark_timeout=tshark_timeout,
            )
            if dask_client is not None:
                dask_client.close()
            if captures == ("-",):
                _label_stdin(result, str(capture))
            bar.phase(f"writing the {fmt} report", read_all=True)
            _finish_background_imports()
            text = _render(result, fmt, table, target, color, details)
        for warning in result.warnings:
            if fmt != "text":
                click.echo(f"warning: {printable(warning)}", err=True)
        _write(target, text, styled=fmt == "text")
    finally:
        forget_early_versions()
    sys.exit(result.exit_code())


def _render(result: Report, fmt: str, table: str, target: Path | None, color: bool | None,
            details: bool) -> str:
    """The report as text in ``fmt``; text, HTML and Markdown show no terminal control
    characters from the capture (CSV cells are quoted by the CSV writer instead)."""
    from .sanitize import printable_report

    if fmt == "text":
        shown = printable_report(result)
        return _render_console(lambda console: _text(shown, console, details), target, color)
    if fmt == "html":  # one self-contained page; -o FILE, or stdout
        from .render.html import render_html

        return render_html(printable_report(result))
    from .render import data

    return {"json": data.to_json,
            "markdown": lambda r: data.to_markdown(printable_report(r))}.get(
        fmt, lambda r: data.to_csv(r, table))(result)


def _stdin_capture(capture: str) -> str:
    """``-``: the capture piped in, spooled to a temporary file for the command's lifetime
    (the fast engine reads a capture more than once; tshark itself would read ``-`` too)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise _Failure("'-' reads the capture from standard input, but nothing is piped in "
                       "(e.g. tcpdump -i any -s 0 -w - port 25 | tls-smtp-report -)", EXIT_USAGE)
    folder = click.get_current_context().with_resource(
        tempfile.TemporaryDirectory(prefix="tls-smtp-report-"))
    path = Path(folder) / "stdin.pcapng"
    with path.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    if not path.stat().st_size:
        raise _Failure("standard input held no capture (0 bytes)", EXIT_UNREADABLE)
    return str(path)


def _label_stdin(result: Report, spooled: str) -> None:
    """Name the capture '-' as the user did, not by its temporary file."""
    result.capture["file"] = "-"
    result.warnings[:] = [w.replace(spooled, "-") for w in result.warnings]
    result.capture["warnings"] = list(result.warnings)


def _dask_client(address: str):
    try:
        from dask.distributed import Client
    except ImportError:
        raise _Failure("--dask-scheduler needs Dask: pip install 'pyshark-tools[dask]'",
                       EXIT_USAGE) from None
    try:
        return Client(address, timeout=10)
    except Exception as exc:  # OSError, TimeoutError, ValueError (bad address) ...
        raise _Failure(f"cannot reach the Dask scheduler at {address} ({exc})",
                       EXIT_USAGE) from None


def _text(report: Report, console: Console, details: bool = False) -> None:
    from .render.text import render_text

    render_text(report, console, details)


def _columns() -> int | None:
    """The COLUMNS environment variable, when it holds a usable width."""
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) >= 20 else None


def _render_console(draw, target: Path | None, color: bool | None) -> str:
    """Render with rich; colours only on a terminal (or when forced) and never with NO_COLOR
    set (https://no-color.org) unless --color asks; COLUMNS sets the width, terminal or not."""
    from rich.console import Console

    is_tty = target is None and sys.stdout.isatty()
    use_color = (is_tty and not os.environ.get("NO_COLOR")) if color is None else color
    columns = _columns()
    wrap = is_tty or columns is not None
    console = Console(record=True, force_terminal=use_color, no_color=not use_color,
                      markup=False, highlight=False, soft_wrap=not wrap,
                      width=columns or (None if is_tty else 120),
                      file=open(os.devnull, "w"))  # noqa: SIM115
    draw(console)
    text = console.export_text(styles=use_color)
    if not use_color:  # rich pads wrapped cells to the width; plain text has no need
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text


@main.command("follow", epilog=EXIT_CODES_HELP)
@capture_argument
@click.option("--stream", type=click.IntRange(0), required=True, metavar="N",
              help="The tcp.stream number (as in the report or Wireshark).")
@keylog_option
@port_option
@all_tls_option
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
@tshark_timeout_option
def follow_command(capture: str, stream: int, keylog: str | None, ports: tuple[int, ...],
                   all_tls: bool, color: bool | None, tshark_timeout: float | None = None
                   ) -> None:
    """Show one conversation like Wireshark's Follow TCP Stream, TLS handshake included."""
    spooled = _stdin_capture(capture) if capture == "-" else capture
    result = _run_analysis(capture=spooled, keylog=keylog, ports=ports or DEFAULT_PORTS,
                           all_tls=all_tls, streams=[stream], tshark_timeout=tshark_timeout)
    if capture == "-":
        _label_stdin(result, spooled)
    from .sanitize import printable_report

    result = printable_report(result)  # no terminal control from the capture
    if not len(result.conversations):
        raise _Failure(f"no SMTP conversation with tcp.stream == {stream} in {capture} "
                       "(see the report for stream numbers; --all-tls for other TLS)",
                       EXIT_USAGE)
    from .render.follow import render_follow

    click.echo(_render_console(lambda console: render_follow(result, stream, console), None,
                               color), nl=False, color=True)
    sys.exit(result.exit_code())  # 1 when this conversation has a problem, as its help says


@main.command("logs", epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(dir_okay=True, path_type=str))
@click.option("--log-format", type=click.Choice(["exchange", "postfix", "exim"]),
              help="Read every file as this format (default: recognised per file).")
@click.option("--expect-cert-name", metavar="NAME",
              help="The inbound connector's TlsSenderCertificateName: check the logged "
                   "certificate carries it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True)
@click.option("--table", type=click.Choice(["sessions", "findings"]), default="sessions",
              show_default=True, help="Which table --format csv writes.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of the terminal.")
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
def logs_command(paths: tuple[str, ...], log_format: str | None, expect_cert_name: str | None,
                 fmt: str, table: str, output: str | None, color: bool | None) -> None:
    """Read mail server logs alone: Exchange SMTP protocol logs (SmtpSend, SmtpReceive),
    Postfix (syslog, journal) and Exim main logs; files, folders, globs, .gz.

    One row per SMTP session in the conversations' vocabulary, with findings whose evidence
    is the log's own file:line.
    """
    from .render import logs as render_logs
    from .serverlogs import LogsUnreadable, read_logs

    target = _output_target(output)
    try:
        result = read_logs(list(paths), log_format=log_format,
                           expect_cert_name=expect_cert_name)
    except LogsUnreadable as exc:
        raise _Failure(f"no SMTP session in the given logs: {exc}", EXIT_UNREADABLE) from None
    if fmt == "text":
        text = _render_console(lambda console: render_logs.render_text(result, console),
                               target, color)
    else:
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        text = render_logs.to_json(result) if fmt == "json" else render_logs.to_csv(result,
                                                                                    table)
    _write(target, text)
    sys.exit(result.exit_code())


main.add_command(wireshark)


if __name__ == "__main__":  # pragma: no cover
    main()
