"""Fuzz campaigns: many schedules of one scenario, in parallel, resumable, losing nothing.

A campaign is a scenario, a strategy (PCT or random), a campaign seed and a target
(a number of schedules or a time).  Its runs are numbered; run ``i`` uses the seed
``derive_seed(campaign seed, i)``, so any run can be re-created alone
(``testbed run SCENARIO --strategy pct --seed S --k K --schedules 1``), whatever
worker ran it.  Runs are grouped in batches of consecutive numbers, each lasting
seconds; batches go to a ``ProcessPoolExecutor`` (each worker process links the kernel
and builds its machine once) or, with a Dask scheduler address, to a Dask cluster
through ``Client.get_executor()``.

The output folder holds everything, written so that a kill at any moment loses no
finding already reported:

- ``campaign.json``: the campaign's definition (written once; ``--resume`` checks it).
- ``findings/``: one reproducer per distinct finding (signature: oracle, address,
  instruction words), written atomically before the finding is reported.
- ``batches.jsonl``: one line per finished (or given up) batch, appended and flushed
  after its findings are on disk; ``--resume`` skips those batches.  A torn last line
  (a kill while writing) is ignored: that batch is simply run again.
- ``stats.json``: schedules, decisions, instructions, findings, wall time, throughput;
  rewritten atomically after every batch.

A batch whose worker raises, or whose worker process dies (a segfault in the emulator),
is reported and retried once; if it fails again it is recorded as lost and the
campaign goes on.  When a process dies the pool cannot tell which batch killed it, so
every batch that was in flight is retried, one at a time.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .findings import reproducer_name, signature_key
from .schedule import ScenarioSource, ScheduleError, atomic_write
from .strategies import Strategy, StrategySpec

if TYPE_CHECKING:
    from .scenario import Session

__all__ = ["Campaign", "CampaignError", "CampaignSpec", "calibrate_k", "derive_seed",
           "run_batch", "spec_from_json"]

FORMAT = "cmodx-testbed/campaign"
VERSION = 1
FAULT_ENV = "TESTBED_CAMPAIGN_FAULT"  # tests: "segv:BATCH[:once]" or "raise:BATCH[:once]"


class CampaignError(Exception):
    """A campaign that cannot start or resume (names the folder and the reason)."""


def derive_seed(campaign_seed: int, run: int) -> int:
    """The seed of run ``run`` of a campaign: independent of workers and batching."""
    h = hashlib.blake2b(f"cmodx-testbed:{campaign_seed}:{run}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def calibrate_k(session: Session, campaign_seed: int) -> int:
    """PCT's k for a campaign: the longest of 20 random runs (seeds derived from the
    campaign's, runs -1..-20), so deterministic and the same for every worker."""
    from .strategies import RandomWalk
    return max(session.run(RandomWalk(derive_seed(campaign_seed, -1 - i))).decisions
               for i in range(20))


@dataclass(frozen=True)
class CampaignSpec:
    scenario: str  # the scenario's name
    strategy: str = "random"  # "random" or "pct"
    seed: int = 0
    batch: int = 200  # runs per batch
    depth: int = 3  # PCT's d
    k: int = 0  # PCT's expected steps per run (calibrated when the campaign starts)
    p_model: float = 0.05  # random walk: probability of a model choice per decision
    ncpus: int | None = None
    cache: str | None = None
    image: str = ""  # the linked kernel image's digest (set when the campaign starts)
    source: dict[str, str] | None = None  # a scenario of one's own: file and SHA-256
    # The data-memory model (a campaign.json written before the switch existed ran "sc").
    memory: str = "arm"
    promises: bool = False  # the Arm model's promises at any point (Session(promises=True))
    # The scenario file the user named on this command line (never read from
    # campaign.json: a campaign file does not make the testbed import anything).
    scenario_file: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.strategy_spec()  # refuses an unknown strategy or a bad option

    def strategy_spec(self) -> StrategySpec:
        return StrategySpec(self.strategy, depth=self.depth, k=max(self.k, 1),
                            p_model=self.p_model)

    def strategy_for(self, run: int) -> Strategy:
        return self.strategy_spec().make(derive_seed(self.seed, run))

    def scenario_source(self) -> ScenarioSource | None:
        return ScenarioSource(**self.source) if self.source is not None else None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["scenario_file"]
        return doc


# campaign.json's fields and their types (None allowed where the default is None).
_FIELDS: dict[str, tuple[type, ...]] = {
    "scenario": (str,), "strategy": (str,), "seed": (int,), "batch": (int,),
    "depth": (int,), "k": (int,), "p_model": (float, int), "ncpus": (int, type(None)),
    "cache": (str, type(None)), "image": (str,), "source": (dict, type(None)),
    "memory": (str,), "promises": (bool,),
}


def spec_from_json(doc: Any, path: Path, scenario_file: str | None) -> CampaignSpec:
    """A campaign's definition from ``campaign.json``: every field type-checked."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CampaignError(f"{path}: not a testbed campaign (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise CampaignError(f"{path}: campaign format version {doc.get('version')!r}; "
                            f"this testbed reads version {VERSION}")
    fields: dict[str, Any] = {}
    for name, types in _FIELDS.items():
        if name not in doc:
            if name == "scenario":
                raise CampaignError(f"{path}: field 'scenario' missing")
            continue
        value = doc[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CampaignError(f"{path}: field {name!r} must be {want}, not {value!r}")
        fields[name] = value
    if fields.get("batch", 1) < 1 or fields.get("seed", 0) < 0 or fields.get("k", 0) < 0:
        raise CampaignError(f"{path}: fields 'batch' (>= 1), 'seed' and 'k' (>= 0) out of "
                            "range")
    if fields.get("cache") is not None:
        from .memory import CacheType
        try:
            CacheType.parse(fields["cache"])
        except ValueError as e:
            raise CampaignError(f"{path}: field 'cache': {e}") from None
    fields.setdefault("memory", "sc")  # written before the switch existed
    if fields["memory"] not in ("sc", "arm"):
        raise CampaignError(f"{path}: field 'memory' must be \"sc\" or \"arm\", not "
                            f"{fields['memory']!r}")
    if fields.get("source") is not None:
        try:
            ScenarioSource.from_json(fields["source"], str(path))
        except ScheduleError as e:
            raise CampaignError(str(e)) from None
    try:
        return CampaignSpec(**fields, scenario_file=scenario_file)
    except ValueError as e:
        raise CampaignError(f"{path}: {e}") from None


# -- the worker side ---------------------------------------------------------------------
_local = threading.local()  # one session per worker thread (Dask workers may have several)


def _session(spec: CampaignSpec) -> Session:
    from .memory import CacheType
    from .scenario import Session, resolve_scenario
    key = (spec.scenario, spec.scenario_file, spec.ncpus, spec.cache, spec.memory,
           spec.promises)
    cached = getattr(_local, "sessions", None)
    if cached is None:
        cached = _local.sessions = {}
    if key not in cached:
        try:
            cache = CacheType.parse(spec.cache) if spec.cache else None
        except ValueError as e:
            raise CampaignError(f"campaign field 'cache': {e}") from None
        cls = resolve_scenario(spec.scenario, spec.scenario_source(), spec.scenario_file)
        session = Session(cls(), ncpus=spec.ncpus, cache=cache, memory=spec.memory,
                          promises=spec.promises)
        # Any run of a campaign is re-created alone by `testbed run`: a worker must not
        # learn fetch points from the runs it happened to run before (Machine.may_patch).
        session.learning = False
        cached[key] = session
    found: Session = cached[key]
    return found


def _inject_fault(spec: str, index: int, attempt: int) -> None:
    if not spec:
        return
    kind, _, rest = spec.partition(":")
    where, _, once = rest.partition(":")
    if str(index) != where or (once == "once" and attempt > 0):
        return
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    raise RuntimeError(f"injected fault in batch {index}")


def run_batch(spec: CampaignSpec, index: int, first: int, count: int,
              attempt: int = 0, fault: str = "") -> dict[str, Any]:
    """Runs ``first .. first+count-1`` of a campaign (in a worker); a JSON-able report.

    ``fault`` is for tests: the parent's ``$TESTBED_CAMPAIGN_FAULT``, passed along
    because worker processes fork from a server started before the test set it."""
    from .runs import reproducer, run_schedules
    _inject_fault(fault, index, attempt)
    session = _session(spec)
    if session.image.digest != spec.image:
        raise CampaignError(f"worker links image {session.image.digest}, the campaign "
                            f"was started on {spec.image}: mixed kernel versions")
    t0 = time.perf_counter()
    decisions = instructions = 0
    found: dict[str, dict[str, Any]] = {}
    seeds = [derive_seed(spec.seed, run) for run in range(first, first + count)]
    for r in run_schedules(session, spec.strategy_spec(), seeds):
        run, result = first + r.index, r.result
        decisions += result.decisions
        instructions += result.instructions
        for f in result.findings:
            key = signature_key(f.signature())
            if key in found:
                continue
            schedule = reproducer(result, session, campaign={"seed": spec.seed, "run": run})
            found[key] = {"run": run, "oracle": str(f.oracle), "message": f.message,
                          "schedule": schedule.to_json()}
    return {"index": index, "first": first, "count": count, "decisions": decisions,
            "instructions": instructions, "seconds": time.perf_counter() - t0,
            "findings": found, "pid": os.getpid()}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _worker_init(campaign_pid: int) -> None:
    # The parent handles Ctrl-C (it stops the campaign cleanly); workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # A campaign killed with SIGKILL cannot stop its workers: they notice and leave.
    def watch() -> None:
        while _alive(campaign_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="campaign-watch").start()


# -- the parent side ---------------------------------------------------------------------
@dataclass
class Stats:
    schedules: int = 0
    decisions: int = 0
    instructions: int = 0
    batches: int = 0
    lost_batches: list[int] = field(default_factory=list)
    retried_batches: list[int] = field(default_factory=list)
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> summary
    seconds: float = 0.0  # wall time over every session of the campaign
    worker_seconds: float = 0.0  # time inside batches, summed over workers
    first_finding: dict[str, Any] | None = None  # {"run", "schedules", "seconds"}


class Campaign:
    """One campaign's output folder and its main loop."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.findings_dir = self.out / "findings"
        self.spec: CampaignSpec | None = None
        self.stats = Stats()
        self.done: set[int] = set()
        self.target: int | None = None  # total schedules asked for (kept for --resume)
        self.on_finding: Callable[[str, dict[str, Any], Path], None] | None = None
        self.on_progress: Callable[[Stats, float], None] | None = None
        self.on_problem: Callable[[str], None] | None = None

    # -- creating and resuming ------------------------------------------------------
    def create(self, spec: CampaignSpec) -> CampaignSpec:
        """Start a new campaign in an empty (or new) folder; calibrates PCT's k."""
        if (self.out / "campaign.json").exists():
            raise CampaignError(f"{self.out}: a campaign is already there; continue it with "
                                "--resume or choose another --out")
        session = _session(spec)
        k = spec.k
        if spec.strategy == "pct" and not k:
            k = calibrate_k(session, spec.seed)
        source = session.source.to_json() if session.source is not None else None
        spec = replace(spec, k=k, image=session.image.digest, source=source)
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "version": VERSION, **spec.to_json()}
        atomic_write(self.out / "campaign.json", json.dumps(doc, indent=2) + "\n")
        self.spec = spec
        return spec

    def load(self, scenario_file: str | None = None) -> CampaignSpec:
        """Read an existing campaign folder (for --resume).  A campaign of a scenario of
        one's own needs its file named (``scenario_file``), and checks its digest."""
        path = self.out / "campaign.json"
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise CampaignError(f"{self.out}: no campaign to resume (no campaign.json)") \
                from None
        except json.JSONDecodeError as e:
            raise CampaignError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise CampaignError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise CampaignError(f"{path}: cannot read: {e.strerror}") from None
        spec = spec_from_json(doc, path, scenario_file)
        digest = _session(spec).image.digest
        if digest != spec.image:
            raise CampaignError(
                f"{self.out}: the campaign ran against kernel image {spec.image}, the "
                f"scenario now links to {digest}: its runs would mean something else. "
                "Start a new campaign.")
        self.spec = spec
        self._read_progress()
        return spec

    def _read_progress(self) -> None:
        path = self.out / "batches.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a kill while appending: that batch runs again
            if not isinstance(rec, dict) or not all(
                    isinstance(rec.get(f, 0), int) and not isinstance(rec.get(f, 0), bool)
                    for f in ("index", "count", "decisions", "instructions")) \
                    or "index" not in rec or not isinstance(rec.get("seconds", 0.0),
                                                            (int, float)):
                self._problem(f"{path}: skipped a malformed line: {line[:60]!r}")
                continue
            self.done.add(rec["index"])
            if rec.get("lost"):
                self.stats.lost_batches.append(rec["index"])
                continue
            self.stats.batches += 1
            self.stats.schedules += rec.get("count", 0)
            self.stats.decisions += rec.get("decisions", 0)
            self.stats.instructions += rec.get("instructions", 0)
            self.stats.worker_seconds += rec.get("seconds", 0.0)
        old = self._read_stats()
        self.stats.seconds = float(old.get("wall_seconds", 0.0))
        target = old.get("target_schedules")
        self.target = target if isinstance(target, int) else None
        ff = old.get("first_finding")
        self.stats.first_finding = ff if isinstance(ff, dict) else None
        for f in sorted(self.findings_dir.glob("*.json")) if self.findings_dir.exists() else []:
            try:
                doc = json.loads(f.read_text())
                key = doc["meta"]["signature"]
                self.stats.findings[key] = {**doc["meta"]["summary"], "reproducer": str(f)}
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours; left alone

    def _read_stats(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.out / "stats.json").read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    # -- recording ------------------------------------------------------------------
    def _record(self, report: dict[str, Any], elapsed: float) -> None:
        """A finished batch: findings to disk first, then the batch line."""
        assert self.spec is not None
        from .schedule import Schedule
        for key, item in sorted(report["findings"].items(), key=lambda kv: kv[1]["run"]):
            run = int(item["run"])
            if self.stats.first_finding is None or run < self.stats.first_finding["run"]:
                self.stats.first_finding = {"run": run, "schedules": run + 1,
                                            "seconds": round(self.stats.seconds + elapsed, 3),
                                            "oracle": item["oracle"]}
            if key in self.stats.findings:
                if run < self.stats.findings[key]["run"]:
                    self.stats.findings[key]["run"] = run  # an earlier run found it too
                continue
            schedule = Schedule.from_json(item["schedule"])
            h = hashlib.sha1(key.encode()).hexdigest()[:10]
            path = self.findings_dir / reproducer_name(self.spec.scenario,
                                                       f"{item['oracle']}-{h}")
            summary = {"oracle": item["oracle"], "message": item["message"], "run": run,
                       "seed": derive_seed(self.spec.seed, run)}
            meta = {**dict(schedule.meta), "signature": key, "summary": summary}
            atomic_write(path, replace(schedule, meta=meta).to_json())
            self.stats.findings[key] = {**summary, "reproducer": str(path)}
            if self.on_finding is not None:
                self.on_finding(key, self.stats.findings[key], path)
        self._append({"index": report["index"], "first": report["first"],
                      "count": report["count"], "decisions": report["decisions"],
                      "instructions": report["instructions"],
                      "seconds": round(report["seconds"], 4),
                      "findings": sorted(report["findings"])})
        self.stats.batches += 1
        self.stats.schedules += report["count"]
        self.stats.decisions += report["decisions"]
        self.stats.instructions += report["instructions"]
        self.stats.worker_seconds += report["seconds"]
        self.done.add(report["index"])

    def _append(self, rec: dict[str, Any]) -> None:
        with open(self.out / "batches.jsonl", "a") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_stats(self, elapsed: float, *, workers: int, backend: str,
                    state: str) -> dict[str, Any]:
        assert self.spec is not None
        s = self.stats
        wall = s.seconds + elapsed
        doc = {
            "scenario": self.spec.scenario, "strategy": self.spec.strategy,
            "seed": self.spec.seed, "state": state, "workers": workers, "backend": backend,
            "schedules": s.schedules, "decisions": s.decisions,
            "instructions": s.instructions, "batches": s.batches,
            "lost_batches": sorted(s.lost_batches),
            "retried_batches": sorted(s.retried_batches),
            "findings": len(s.findings),
            "findings_by_oracle": dict(sorted(Counter(
                f["oracle"] for f in s.findings.values()).items())),
            "first_finding": s.first_finding,
            "wall_seconds": round(wall, 3),
            "session_seconds": round(elapsed, 3),
            "schedules_per_second": round(s.schedules / wall, 1) if wall > 0 else 0.0,
            "worker_seconds": round(s.worker_seconds, 3),
            "target_schedules": self.target,
        }
        atomic_write(self.out / "stats.json", json.dumps(doc, indent=2) + "\n")
        return doc

    # -- the main loop --------------------------------------------------------------
    def _batches(self, schedules: int | None) -> Iterator[tuple[int, int, int]]:
        assert self.spec is not None
        size = self.spec.batch
        index = 0
        while schedules is None or index * size < schedules:
            if index not in self.done:
                count = size if schedules is None else min(size, schedules - index * size)
                yield index, index * size, count
            index += 1

    def run(self, *, schedules: int | None = None, seconds: float | None = None,
            workers: int = 1, dask: str | None = None) -> dict[str, Any]:
        """Run until ``schedules`` runs are done or ``seconds`` have passed."""
        assert self.spec is not None
        spec = self.spec
        if schedules is not None:
            self.target = schedules
        t0 = time.perf_counter()
        deadline = t0 + seconds if seconds is not None else None
        backend = "dask" if dask else "local"
        client: Any = None
        executor: cf.Executor
        if dask:
            try:
                import distributed
            except ImportError:
                raise CampaignError("--dask needs the dask extra: pip install "
                                    "'cmodx-testbed[dask]'") from None
            try:
                client = cast(Any, distributed).Client(dask, timeout=10)
            except OSError as e:
                raise CampaignError(f"cannot reach the Dask scheduler at {dask}: {e}") \
                    from None
            executor = client.get_executor(pure=False)
            workers = max(1, sum(w.get("nthreads", 1) for w in
                                 client.scheduler_info()["workers"].values()))
        else:
            executor = self._pool(workers)
        todo = self._batches(schedules)
        fault = os.environ.get(FAULT_ENV, "")
        retry: list[tuple[int, int, int]] = []  # batches to retry, one at a time
        attempts: dict[int, int] = {}
        inflight: dict[cf.Future[dict[str, Any]], tuple[int, int, int]] = {}
        exhausted = False
        state = "running"

        unsent: list[tuple[int, int, int]] = []  # refused by a broken pool: not run yet

        def submit(job: tuple[int, int, int]) -> bool:
            index, first, count = job
            try:
                fut = executor.submit(run_batch, spec, index, first, count,
                                      attempts.get(index, 0), fault)
            except BrokenProcessPool:
                unsent.append(job)
                return False
            inflight[fut] = job
            return True

        def give_up_or_retry(job: tuple[int, int, int], why: str) -> None:
            index = job[0]
            attempts[index] = attempts.get(index, 0) + 1
            if attempts[index] >= 2:
                self.stats.lost_batches.append(index)
                self._append({"index": index, "first": job[1], "count": job[2],
                              "lost": True, "why": why})
                self.done.add(index)
                self._problem(f"batch {index} (runs {job[1]}..{job[1] + job[2] - 1}) failed "
                              f"again ({why}); it is lost, the campaign goes on")
            else:
                self.stats.retried_batches.append(index)
                self._problem(f"batch {index} (runs {job[1]}..{job[1] + job[2] - 1}) "
                              f"failed ({why}); retrying it")
                retry.append(job)

        try:
            while True:
                # Fill the executor: retries alone (to know which batch kills a worker).
                if retry:
                    if not inflight:
                        submit(retry.pop(0))
                elif not exhausted:
                    while len(inflight) < 2 * workers and not unsent:
                        if deadline is not None and time.perf_counter() >= deadline:
                            exhausted = True
                            break
                        job = next(todo, None)
                        if job is None:
                            exhausted = True
                            break
                        submit(job)
                broken = bool(unsent)
                if not inflight and not broken:
                    if retry:
                        continue
                    break
                finished, _ = cf.wait(list(inflight), timeout=0.5,
                                      return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    job = inflight.pop(fut)
                    try:
                        report = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        give_up_or_retry(job, "its worker process died")
                        continue
                    except CampaignError:
                        raise
                    except Exception as e:  # the worker raised: only that batch is lost
                        give_up_or_retry(job, f"{type(e).__name__}: {e}")
                        continue
                    self._record(report, time.perf_counter() - t0)
                    self.write_stats(time.perf_counter() - t0, workers=workers,
                                     backend=backend, state=state)
                if broken:
                    # Every batch still in flight died with the pool: retry each.
                    for fut, job in list(inflight.items()):
                        inflight.pop(fut)
                        give_up_or_retry(job, "its worker process died")
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor = self._pool(workers)
                    if unsent:  # these never ran: submit them first
                        todo = itertools.chain(unsent, todo)
                        unsent = []
                        exhausted = False
                if self.on_progress is not None:
                    self.on_progress(self.stats, time.perf_counter() - t0)
            state = "done"
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        finally:
            for fut in inflight:
                fut.cancel()
            if client is not None:
                executor.shutdown(wait=False)  # Dask's executor has no cancel_futures
                client.close()
            else:
                executor.shutdown(wait=False, cancel_futures=True)
            stats = self.write_stats(time.perf_counter() - t0, workers=workers,
                                     backend=backend, state=state)
        return stats

    def _pool(self, workers: int) -> cf.ProcessPoolExecutor:
        # forkserver: workers start clean (no threads, no Unicorn state of the parent),
        # forked from a server that has imported the testbed once.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["testbed.campaign", "testbed.scenario", "testbed.runs"])
        return cf.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                                      initargs=(os.getpid(),), mp_context=ctx)

    def _problem(self, text: str) -> None:
        if self.on_problem is not None:
            self.on_problem(text)
        else:
            print(f"testbed: {text}", file=sys.stderr)
