"""The fast engine: prefilter, then tshark over conversation shards in parallel, then merge.

``fast_extract`` returns the same :class:`~pyshark_tools.core.events.Extraction` the reference
engine (``events.extract``: one tshark pass over the whole capture) returns, with the original
capture's frame numbers, ``tcp.stream`` indices, times and per-conversation counts:

1. :func:`pyshark_tools.engine.prefilter.prefilter` reads the capture once, keeps only what tshark
   needs and splits the SMTP conversations round-robin into ``jobs`` reduced captures;
2. each shard goes through the same ``tshark -T fields`` pass and the same row -> event code
   as the reference (locally in ``jobs`` processes, or as Dask tasks on a cluster);
3. the shards' events, certificate messages and per-stream facts are merged in frame order,
   completed with the prefilter's counts and the events it synthesised for left-out packets.

With a key log (or secrets embedded in the capture) everything of the SMTP conversations is
kept and the shards collapse into one (TLS session resumption may span conversations).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.events import (
    CertificateMessage,
    EventSink,
    Extraction,
    StreamFacts,
    assign_roles,
    concat_events,
    endpoint,
)
from ..core.schema import Engine
from ..core.tcpgaps import SequenceGaps, tcp_preferences
from ..errors import CaptureError
from ..forking import can_fork, forked_pool, map_forked, release_free_memory
from .capture_format import has_embedded_secrets
from .native import NativeResult
from .prefilter import Prefiltered, Shard, prefilter
from .scan import numbering_for
from .tshark import DISABLED_PROTOCOLS, FieldRun, Tshark, field_command, iter_fields
from .tshark_rows import FIELDS, RowReader, display_filter, row_decode_as

__all__ = ["DISABLED_PROTOCOLS", "ShardResult", "default_jobs", "fast_extract", "run_shard"]


#: Capture bytes per shard and worker (see ``fast_extract``).
SHARD_BYTES = 96 << 20

_PARTIAL = ("lost_segments", "malformed", "has_smtp", "has_tls", "client_hello_from",
            "first_command_from")


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class ShardResult:
    """What one shard's tshark pass gives back (picklable, for processes and Dask)."""

    events: Any  # the shard's events DataFrame (compact to send back; merged in frame order)
    partial: dict[int, dict[str, Any]]
    certificates: list[CertificateMessage]
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    command: list[str] = field(default_factory=list)
    complete: bool = True  # False: the shard's tshark stopped early (see warnings)


def shard_command(tshark: Tshark, source: str | os.PathLike, ports: Sequence[int],
                  keylog: str | None = None, preferences: Sequence[str] = ()) -> list[str]:
    """The reference engine's fields pass over one reduced capture (``-`` = stdin), with the
    original capture's TCP ``preferences`` (``tcpgaps.tcp_preferences``)."""
    options = [*preferences, *([f"tls.keylog_file:{keylog}"] if keylog is not None else [])]
    # (DISABLED_PROTOCOLS: every fields pass, see pyshark_tools.engine.tshark)
    return field_command(tshark, source, FIELDS, display_filter=display_filter(ports, False),
                         decode_as=row_decode_as(ports, keylog is not None
                                                 or has_embedded_secrets(source)),
                         options=options)


def run_shard(tshark: Tshark, shard: Shard, ports: Sequence[int],
              keylog: str | None = None, preferences: Sequence[str] = ()) -> ShardResult:
    """The reference engine's tshark pass and row handling over one reduced capture,
    with frame numbers and stream indices mapped back to the original capture."""
    cmd = shard_command(tshark, shard.path, ports, keylog, preferences)
    run = FieldRun(time_limit=tshark.limit_for(shard.path))
    rows = iter_fields(cmd, FIELDS, run) if shard.packets else iter(())
    return _consume(rows, shard, run, cmd, ports)


def _consume(rows, shard: Shard, run: FieldRun, cmd: list[str],
             ports: Sequence[int]) -> ShardResult:
    reader = RowReader(ports)
    facts: dict[int, StreamFacts] = {}
    frames, streams, post_cut = shard.frames, shard.streams, shard.post_cut
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    gaps = SequenceGaps()
    for row in rows:
        try:
            reduced = int(row["frame.number"]) - 1
            when = datetime.fromtimestamp(float(row["frame.time_epoch"]), tz=UTC)
        except ValueError:
            continue
        if not 0 <= reduced < len(post_cut):  # not a frame of this shard: garbled output
            run.garbage_lines += 1
            continue
        if post_cut[reduced]:
            continue  # after the cut: the prefilter counted it and synthesised its events
        frame, stream = frames[reduced], streams[reduced]
        src = endpoint(row["ip.src"] or row["ipv6.src"], row["tcp.srcport"])
        dst = endpoint(row["ip.dst"] or row["ipv6.dst"], row["tcp.dstport"])
        f = facts.get(stream)
        if f is None:
            f = facts[stream] = StreamFacts(stream=stream, first_src=src, first_dst=dst,
                                            first_frame=frame, first_time=epoch)
        gaps.add(stream, src, row)
        if row["_ws.malformed"]:
            f.malformed += 1
        try:
            reader.row(f, row, frame, when, src, dst)
        except (ValueError, IndexError):  # a row tshark garbled: counted, skipped
            run.garbage_lines += 1
    for stream, f in facts.items():
        f.lost_segments = gaps.holes(stream)  # truly missing, not merely reordered
    events, certs = reader.finish()
    partial = {s: {name: getattr(f, name) for name in _PARTIAL} for s, f in facts.items()}
    warnings = [_original_packets(w, frames) for w in run.warnings] + reader.problems
    return ShardResult(events, partial, certs, warnings, run.truncated, list(cmd),
                       complete=run.complete)


def _original_packets(message: str, frames) -> str:
    """tshark's "in packet N" of a reduced capture, as the original capture's frame number."""
    def original(match: re.Match[str]) -> str:
        reduced = int(match[1]) - 1
        return f"in packet {frames[reduced]}" if 0 <= reduced < len(frames) else match[0]

    return re.sub(r"in packet (\d+)", original, message)


def _run_shard_args(args: tuple) -> ShardResult:
    return run_shard(*args)


# long: the fast engine's steps in their order (index or loop, native reader, shards on cores or
#   Dask, merge), each with its fallback beside it
def fast_extract(
    tshark: Tshark,
    capture: str | os.PathLike,
    *,
    ports: Sequence[int],
    implicit_tls_ports: Sequence[int] = (465,),
    keylog: str | os.PathLike | None = None,
    jobs: int | None = None,
    dask_client: Any = None,
    progress: Callable[[int, int], None] | None = None,
    workdir: str | os.PathLike | None = None,
    native: bool = True,
) -> Extraction:
    """Prefilter + sharded tshark + merge. Raises ``prefilter.Unsupported`` when the capture
    needs the reference engine. ``native``: conversations :mod:`pyshark_tools.engine.native`
    can read exactly skip tshark (never with a key log: decryption is tshark's)."""
    if dask_client is not None:
        workers = max(1, jobs or _dask_workers(dask_client))
    else:
        workers = max(1, jobs or default_jobs())
    # tshark's memory grows with the packets it reads: more shards than workers on large
    # captures keep each tshark small (about one shard per SHARD_BYTES of capture per worker)
    size = Path(capture).stat().st_size
    nshards = workers * max(1, -(-size // SHARD_BYTES))
    if native:
        # the native reader takes most conversations: what is left for tshark is small, and
        # every tshark costs ~0.3 s to start
        nshards = workers
    if keylog is not None:
        nshards = workers = 1
    keylog_text = os.fspath(keylog) if keylog is not None else None
    prefs = tcp_preferences(capture)

    def read_whole(shard: Shard) -> ShardResult:
        # (in a forked worker, while the other conversations are read)
        return run_shard(tshark, shard, tuple(ports), keylog_text, prefs)

    with tempfile.TemporaryDirectory(prefix="tls-smtp-report-", dir=workdir) as tmp:
        numbering = numbering_for(tshark.version)  # tcp.stream as this tshark numbers it
        pre = prefilter(capture, tmp, ports=ports, implicit_tls_ports=implicit_tls_ports,
                        shards=nshards, keep_all_tls=keylog is not None, native=native,
                        progress=progress, workers=workers if dask_client is None else 1,
                        numbering=numbering,
                        whole_reader=read_whole if dask_client is None else None)
        if pre.secrets_embedded and nshards > 1:
            # Merge is only correct when TLS sessions cannot resume across shards.
            pre = prefilter(capture, tmp, ports=ports, implicit_tls_ports=implicit_tls_ports,
                            shards=1, keep_all_tls=True, numbering=numbering)
        release_free_memory()  # what the reading freed, before the tsharks of what is left
        shards = [s for s in pre.shards if s.packets]
        if pre.native is not None and len(shards) > 1:
            # what the native reader left: one tshark when small, else one per worker
            small = sum(s.packets for s in shards) <= ONE_TSHARK_PACKETS
            shards = _balanced(shards, 1 if small else workers, Path(tmp))
        work = [(tshark, s, tuple(ports), keylog_text, prefs) for s in shards]
        if hasattr(progress, "phase"):
            progress.phase(f"tshark over {len(work)} shard(s)")
        native_part = []
        if dask_client is not None:
            futures = dask_client.map(_run_shard_args, work, pure=False)
            results = dask_client.gather(futures)
        elif pre.native is not None and 1 <= len(work) <= workers:
            # what the native reader left: a tshark per shard, each read by a thread (no
            # forked process to pay for: tshark does the work, the rows it prints are few)
            with ThreadPoolExecutor(len(work)) as pool:
                pending = [pool.submit(run_shard, *w) for w in work]
                native_part.append(native_shard(pre.native))
                results = [p.result() for p in pending]
        elif len(work) > 1:
            # the native reader's table is built here while tshark reads the shards
            with forked_pool(min(len(work), workers)) as pool:
                pending = pool.map(_run_shard_args, work)
                if pre.native is not None:
                    native_part.append(native_shard(pre.native))
                results = list(pending)
        else:
            results = [run_shard(*w) for w in work]
    if pre.native is not None and not native_part:
        native_part.append(native_shard(pre.native))
    return merge(pre, [*results, *pre.whole_results, *native_part], ports)


#: With the native reader, up to this many packets left for tshark go to one tshark: a
#: further tshark costs ~100 MB and ~0.3 s to start, while tshark takes 40-90 us a packet, so
#: a larger residue (conversations kept whole on a capture with retransmissions: 93,000
#: packets on the impaired benchmark) is read by one tshark per core.
ONE_TSHARK_PACKETS = 10_000


def _balanced(shards: Sequence[Shard], groups: int, tmp: Path) -> list[Shard]:
    """``shards`` as at most ``groups`` shards of about equal packets (largest first onto
    the lightest group; a group of several is concatenated): a small shard found late (a
    conversation read again) does not wait for a tshark of its own."""
    if len(shards) <= groups:
        return list(shards)
    bins: list[list[Shard]] = [[] for _ in range(groups)]
    loads = [0] * groups
    for shard in sorted(shards, key=lambda s: -s.packets):
        lightest = loads.index(min(loads))
        bins[lightest].append(shard)
        loads[lightest] += shard.packets
    return [group[0] if len(group) == 1 else
            _concatenate(sorted(group, key=lambda s: s.path.name), tmp / f"residue-{k}.pcapng")
            for k, group in enumerate(bins) if group]


def _concatenate(shards: Sequence[Shard], path: Path) -> Shard:
    """One capture of several shards: a pcapng file may hold several sections, and tshark
    numbers their frames consecutively."""
    frames, streams, post_cut = array("Q"), array("I"), bytearray()
    with path.open("wb") as out:
        for shard in shards:
            out.write(shard.path.read_bytes())
            frames.extend(shard.frames)
            streams.extend(shard.streams)
            post_cut.extend(shard.post_cut)
    return Shard(path, frames, streams, post_cut)


def native_shard(found: NativeResult) -> ShardResult:
    """The native reader's conversations in the shape of one tshark shard's result."""
    return ShardResult(found.events, found.partial, list(found.certificates),
                       command=["(native reader: cleartext SMTP and TLS handshakes)"])


def _dask_workers(client: Any) -> int:
    try:
        return max(1, sum(w.get("nthreads", 1)
                          for w in client.scheduler_info()["workers"].values()))
    except Exception:  # pragma: no cover - scheduler without the usual info
        return default_jobs()


# long: shard results joined stream by stream in frame order (events, facts, certificate messages,
#   counts): one invariant, one place
def merge(pre: Prefiltered, results: Sequence[ShardResult], ports: Sequence[int]) -> Extraction:
    """Shard results + prefilter counts -> the reference engine's Extraction."""
    streams: dict[int, StreamFacts] = {}
    for total in sorted(pre.streams.values(), key=lambda t: t.first_frame):
        streams[total.stream] = StreamFacts(
            stream=total.stream, first_src=total.first_src, first_dst=total.first_dst,
            first_frame=total.first_frame, first_time=total.first_time,
            last_frame=total.last_frame, last_time=total.last_time, frames=total.frames,
            bytes=total.bytes, syn_from=total.syn_from, fin=total.fin, rst=total.rst,
            truncated_frames=total.truncated_frames,
        )

    parts = []
    certs: list[CertificateMessage] = []
    warnings: list[str] = []
    truncated = False
    complete = True
    for result in results:
        parts.append(result.events)
        for stream, values in result.partial.items():
            facts = streams.get(stream)
            if facts is not None:
                for name, value in values.items():
                    setattr(facts, name, value)
        certs.extend(result.certificates)
        warnings.extend(w for w in result.warnings if w not in warnings)
        truncated = truncated or result.truncated
        complete = complete and result.complete
    if pre.synthetic:
        sink = EventSink()
        for ev in pre.synthetic:
            sink.add(frame=ev.frame, time=ev.time, stream=ev.stream, src=ev.src, dst=ev.dst,
                     sender=None, kind=ev.kind, name=ev.name, detail="", decrypted=False)
        parts.append(sink.frame())
    events = concat_events(parts) if parts else EventSink().frame()
    if len(parts) > 1:
        certs.sort(key=lambda m: m.frame)
    certs = assign_roles(streams, events, certs, ports)
    return Extraction(
        events=events,
        streams=streams,
        certificate_messages=certs,
        warnings=warnings,
        truncated_file=truncated,
        packets_read=pre.packets_matched,
        first_time=pre.first_time,
        last_time=pre.last_time,
        tshark_command=results[0].command if results else [],
        native_streams=len(pre.native.partial) if pre.native is not None else 0,
        native_demoted=dict(sorted(pre.demoted.items())),
        complete=complete,
    )


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in counts:
        for why, n in one.items():
            out[why] = out.get(why, 0) + n
    return dict(sorted(out.items()))


# --- engine choice ------------------------------------------------------------------------


def extract_with_engine(
    tshark: Tshark,
    path: Path,
    *,
    ports: Sequence[int],
    all_tls: bool,
    keylog: str | os.PathLike | None,
    prefilter: bool,
    jobs: int | None,
    dask_client: Any,
    progress: bool | None,
    reference: Callable[..., Extraction],
    native: bool = True,
) -> tuple[Extraction, Engine, str]:
    """(extraction, engine, why): the fast engine when it can promise the reference
    engine's exact result, the reference engine otherwise."""
    from .prefilter import Unsupported
    from .progress import ByteProgress

    if not prefilter:
        return (reference(tshark, path, ports=ports, all_tls=all_tls, keylog=keylog),
                Engine.REFERENCE, "fast engine switched off")
    if all_tls:
        return (reference(tshark, path, ports=ports, all_tls=all_tls, keylog=keylog),
                Engine.REFERENCE, "--all-tls needs every TLS conversation: one tshark pass")

    # a bar the caller owns (the command line's, kept through rendering) is not closed here
    owned = isinstance(progress, ByteProgress)
    with (contextlib.nullcontext(progress) if owned
          else ByteProgress(path.name, enabled=progress)) as bar:
        try:
            extraction = fast_extract(tshark, path, ports=ports, keylog=keylog, jobs=jobs,
                                      dask_client=dask_client, progress=bar, native=native)
            if owned:
                bar.phase("conversations, certificates, findings", read_all=True)
            return extraction, Engine.FAST, ""
        except (Unsupported, CaptureError, BrokenProcessPool) as exc:
            # CaptureError here: tshark refused a reduced capture (never seen; a bug of the
            # fast engine must not cost the user the report); BrokenProcessPool: a worker
            # died (killed, out of memory): the reference engine needs none
            bar.phase("tshark (reference engine)")
            return (reference(tshark, path, ports=ports, all_tls=all_tls, keylog=keylog),
                    Engine.REFERENCE, f"fast engine not used: {exc}")


# --- per-conversation tables in chunks ---------------------------------------------------

#: Conversations per chunk: chunks keep the cost linear even if a stage filters per
#: conversation, and let the chunks run in parallel.
CHUNK = 2048


def _tables_chunk(sub: Extraction, certificates, ports: Sequence[int], all_tls: bool,
                  options: Any):
    from ..core.conversations import summarise
    from ..core.findings import attach_severity, diagnose

    conversations = summarise(sub, certificates, ports=ports, all_tls=all_tls)
    findings = diagnose(conversations, certificates, sub.events, options)
    return attach_severity(conversations, findings), findings


def _tables_chunk_args(args: tuple):
    return _tables_chunk(*args)


# long: the core stages chunked over processes or Dask, and the serial path for small captures, side
#   by side so they stay equal
def build_tables(extraction: Extraction, certificates, *, ports: Sequence[int], all_tls: bool,
                 options: Any, jobs: int = 1, dask_client: Any = None, chunk: int = CHUNK):
    """(conversations with severity, findings): the same tables as ``summarise`` and
    ``diagnose`` over the whole extraction, computed chunk by chunk of conversations (on
    Dask when a client is given and there are several chunks)."""
    import pandas as pd

    streams = sorted(extraction.streams)
    forked = dask_client is None and jobs > 1 and can_fork()
    if forked and len(streams) > chunk:
        chunk = -(-len(streams) // jobs)  # one even chunk per process: nothing is sent to them
    if len(streams) <= chunk:
        return _tables_chunk(extraction, certificates, ports, all_tls, options)
    chunk_of = {s: i // chunk for i, s in enumerate(streams)}
    events = extraction.events
    ev_groups = dict(iter(events.groupby(events["stream"].map(chunk_of), sort=True))) \
        if len(events) else {}
    cert_groups = dict(iter(certificates.groupby(certificates["stream"].map(chunk_of),
                                                 sort=True))) if len(certificates) else {}
    work = []
    for cid in range(len(streams) // chunk + (1 if len(streams) % chunk else 0)):
        members = streams[cid * chunk:(cid + 1) * chunk]
        sub = Extraction(
            events=ev_groups.get(cid, events.iloc[0:0]),
            streams={s: extraction.streams[s] for s in members},
            certificate_messages=[], warnings=[], truncated_file=extraction.truncated_file,
            packets_read=0, first_time=None, last_time=None, tshark_command=[],
        )
        work.append((sub, cert_groups.get(cid, certificates.iloc[0:0]), tuple(ports), all_tls,
                     options))
    if dask_client is not None:
        results = dask_client.gather(dask_client.map(_tables_chunk_args, work, pure=False))
    else:
        # forked workers inherit the chunks (sending them would cost more than it saves);
        # only the result tables travel back
        results = map_forked(_tables_chunk_args, work, jobs if forked else 1)
    conversations = pd.concat([r[0] for r in results], ignore_index=True)
    findings = pd.concat([r[1] for r in results], ignore_index=True)
    findings.attrs["refused"] = [line for r in results for line in r[1].attrs.get("refused", [])]
    return conversations, findings
