"""`finetune`: the platform from a terminal or a CI job.

Exit codes (stable, for scripts):
  0  success
  1  the work failed: a job or an export, push or Ollama import failed, or a dataset is invalid
  2  usage error: bad arguments, an unreadable spec file, no URL or token configured
  3  the API refused: an HTTP error from the server (the server's message is printed), authentication included
  4  the job was cancelled
  5  the server could not be reached, or waiting timed out
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .client import JSON, Client
from .config import config_path, resolve, save_config
from .errors import ApiError, AuthError, ConnectionFailed, TaskFailed, WaitTimeout
from .progress import ProgressBar, human_bytes, human_duration

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_CANCELLED = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int | None) else EXIT_USAGE
    if not hasattr(args, "run"):  # a command group without its command
        getattr(args, "group", parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        _err(f"finetune: {exc}")
        return EXIT_USAGE
    except AuthError as exc:
        _err(f"finetune: authentication failed: {exc}")
        _err("  check the token (`finetune login`, FINETUNE_TOKEN) and the URL")
        return EXIT_API
    except ApiError as exc:
        _err(f"finetune: the server refused: {exc}")
        return EXIT_API
    except ConnectionFailed as exc:
        _err(f"finetune: {exc}")
        return EXIT_UNREACHABLE
    except WaitTimeout as exc:
        _err(f"finetune: {exc}")
        return EXIT_UNREACHABLE
    except TaskFailed as exc:
        _err(f"finetune: {exc}")
        return EXIT_CANCELLED if exc.status == "cancelled" else EXIT_FAILED
    except KeyboardInterrupt:
        _err("finetune: interrupted")
        return EXIT_INTERRUPTED


# --- the parser ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --url/--token/--json work before or after the subcommand (SUPPRESS: a subparser never resets them).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="platform URL (else FINETUNE_URL, else the login)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (else FINETUNE_TOKEN, else the login)")
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result as JSON (watch: one event per line)",
    )
    parser = argparse.ArgumentParser(
        prog="finetune",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive the finetune platform: datasets, training jobs, models, exports.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
    )
    top = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(group: Any, name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(run=run)
        return p

    def group(name: str, help: str) -> Any:
        g = top.add_parser(name, parents=[common], help=help, description=help)
        g.set_defaults(group=g)
        return g.add_subparsers(title=f"{name} commands", metavar="COMMAND")

    p = command(top, "login", cmd_login, "check and save the URL and a token (or sign in to create one)")
    p.add_argument("--username", help="sign in with this user's password and create an API token")
    p.add_argument("--token-name", default=f"finetune CLI on {socket.gethostname()}", help=argparse.SUPPRESS)
    command(top, "whoami", cmd_whoami, "the signed-in user")

    ds = group("datasets", "upload datasets, read validation reports")
    command(ds, "list", cmd_datasets_list, "your datasets")
    p = command(ds, "upload", cmd_datasets_upload, "upload files as one dataset, then wait for the verdict")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--name")
    p.add_argument("--format", help="auto (default) or a format name")
    p.add_argument("--column-mapping", help='JSON object, e.g. {"prompt": "question", "completion": "answer"}')
    p.add_argument("--no-wait", action="store_true", help="do not wait for validation")
    p = command(ds, "report", cmd_datasets_report, "the validation report of a dataset")
    p.add_argument("id", type=int)

    jobs = group("jobs", "create, watch, cancel and resume training jobs")
    p = command(jobs, "list", cmd_jobs_list, "your jobs, newest first")
    p.add_argument("--status")
    p = command(jobs, "get", cmd_jobs_get, "one job")
    p.add_argument("id", type=int)
    p = command(jobs, "create", cmd_jobs_create, "create a job from a YAML or JSON spec (the API's job fields)")
    p.add_argument("spec", metavar="SPEC", help="a .yaml/.yml/.json file, or - for stdin")
    p.add_argument("--watch", action="store_true", help="then watch it to the end (exit code as `jobs watch`)")
    p = command(jobs, "watch", cmd_jobs_watch, "live loss, learning rate and ETA until the job ends")
    p.add_argument("id", type=int)
    p.add_argument("--logs", action="store_true", help="print the job's log lines too")
    p = command(jobs, "cancel", cmd_jobs_cancel, "cancel a job (a running one stops within a step)")
    p.add_argument("id", type=int)
    p = command(jobs, "resume", cmd_jobs_resume, "queue a failed or cancelled job again (from its last checkpoint)")
    p.add_argument("id", type=int)
    p.add_argument("--watch", action="store_true", help="then watch it to the end")

    models = group("models", "fine-tuned models: export, download, push, Ollama")
    command(models, "list", cmd_models_list, "your fine-tuned models")
    command(models, "base", cmd_models_base, "base models you can train on (their ids go in a job spec)")
    p = command(models, "export", cmd_models_export, "export a model (and wait for it)")
    p.add_argument("id", type=int, metavar="MODEL_ID")
    p.add_argument("--format", default="adapter", help="adapter (default), merged or gguf")
    p.add_argument("--quantization", help="GGUF quantization, passed to the server as given (e.g. q8_0, f16)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the export")
    p.add_argument("--download", nargs="?", const=".", metavar="PATH", help="then download it (into PATH)")
    p = command(models, "exports", cmd_models_exports, "the exports of a model")
    p.add_argument("id", type=int, metavar="MODEL_ID")
    p = command(models, "download", cmd_models_download, "download a finished export (SHA-256 checked)")
    p.add_argument("id", type=int, metavar="EXPORT_ID", help="the export's id (`finetune models export` prints it)")
    p.add_argument("-o", "--output", default=".", help="folder or file to write (default: here)")
    p = command(models, "push-hub", cmd_models_push_hub, "push a model to the Hugging Face Hub (your saved token)")
    p.add_argument("id", type=int, metavar="MODEL_ID")
    p.add_argument("--repo", required=True, help="`name` (your namespace) or `namespace/name`")
    p.add_argument("--public", action="store_true", help="a public repository (default: private)")
    p.add_argument("--no-wait", action="store_true")
    p = command(models, "ollama-import", cmd_models_ollama_import, "import a model into the platform's Ollama")
    p.add_argument("id", type=int, metavar="MODEL_ID")
    p.add_argument("--name", required=True, help="Ollama model name, e.g. my-model or my-model:v2")
    p.add_argument(
        "--quantization",
        default=None,
        help="the GGUF Ollama runs: F16, Q8_0, Q6_K, Q5_K_M or Q4_K_M (default: the server's setting)",
    )
    p.add_argument("--no-wait", action="store_true")
    return parser


# --- login -------------------------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = getattr(args, "url", None) or os.environ.get("FINETUNE_URL") or _prompt("Platform URL: ")
    url = url.rstrip("/")
    if "://" not in url:
        raise UsageError(f"the URL needs a scheme, e.g. http://{url}")
    if args.username:
        password = os.environ.get("FINETUNE_PASSWORD") or getpass.getpass(f"Password for {args.username}: ")
        with Client.login(url, args.username, password) as session:
            token = session.create_token(args.token_name)
    else:
        token = (
            getattr(args, "token", None)
            or os.environ.get("FINETUNE_TOKEN")
            or getpass.getpass("API token (Settings → API tokens): ")
        )
    if not token:
        raise UsageError("no token given")
    with Client(url, token) as client:
        me = client.me()
    path = save_config(url, token)
    if _json(args):
        _out({"url": url, "username": me.get("username"), "config": str(path)})
    else:
        print(f"Signed in to {url} as {me.get('username')}; saved to {path}")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace) -> int:
    with _client(args) as client:
        me = client.me()
    if _json(args):
        _out(me)
    else:
        print(f"{me.get('username')} on {client.url}")
    return EXIT_OK


# --- datasets ----------------------------------------------------------------------------------------------------


def cmd_datasets_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.datasets.list()
    _table(args, rows, ["id", "name", "version", "status", "verdict", "format", "row_count"])
    return EXIT_OK


def cmd_datasets_upload(args: argparse.Namespace) -> int:
    paths = [Path(f) for f in args.files]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    mapping = None
    if args.column_mapping:
        try:
            mapping = json.loads(args.column_mapping)
        except ValueError as exc:
            raise UsageError(f"--column-mapping is not JSON: {exc}") from None
    bar = ProgressBar()
    with _client(args) as client:
        dataset = client.datasets.upload(
            paths,
            name=args.name,
            format=args.format,
            column_mapping=mapping,
            progress=lambda done, total: bar.update(
                done / total if total else 1.0, f"uploading {human_bytes(done)} / {human_bytes(total)}"
            ),
        )
        bar.update(1.0, f"uploaded {human_bytes(sum(p.stat().st_size for p in paths))}", force=True)
        bar.finish()
        if args.no_wait:
            _show_dataset(args, dataset, None)
            return EXIT_OK
        bar.message(f"dataset {dataset['id']} uploaded; validating...")
        dataset = client.datasets.wait(
            dataset["id"],
            on_update=lambda row: bar.update(float(row.get("progress") or 0.0), f"validating ({row.get('status')})"),
        )
        bar.finish()
        report = client.datasets.report(dataset["id"]) if dataset["status"] in ("ready", "invalid") else None
    _show_dataset(args, dataset, report)
    return EXIT_OK if dataset["status"] == "ready" else EXIT_FAILED


def cmd_datasets_report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.datasets.get(args.id)
        report = client.datasets.report(args.id)
    if _json(args):
        _out(report)
    else:
        _show_dataset(args, dataset, report)
    return EXIT_FAILED if report.get("verdict") == "invalid" else EXIT_OK


def _show_dataset(args: argparse.Namespace, dataset: JSON, report: JSON | None) -> None:
    if _json(args):
        _out({**dataset, "report": report} if report is not None else dataset)
        return
    verdict = (report or {}).get("verdict") or dataset.get("verdict") or "-"
    print(
        f"dataset {dataset['id']} '{dataset.get('name')}' v{dataset.get('version')}: {dataset.get('status')}, "
        f"verdict {verdict}"
    )
    if dataset.get("error"):
        print(f"  error: {dataset['error']}")
    if not report:
        return
    print(
        f"  {report.get('rows')} rows ({report.get('rows_valid')} valid), format {report.get('format')}, "
        f"{report.get('errors_total', 0)} errors, {len(report.get('warnings') or [])} warnings"
    )
    tokens = report.get("tokens") or {}
    if tokens.get("percentiles"):
        p = tokens["percentiles"]
        print(
            f"  tokens: mean {tokens.get('mean')}, p95 {p.get('p95')}, max {p.get('max')} "
            f"(max_length {tokens.get('max_length')})"
        )
    for error in (report.get("errors") or [])[:10]:
        where = f"{error.get('file')}:{error.get('line')}" if error.get("line") else str(error.get("file") or "")
        print(f"  error   {where}: {error.get('message')}")
    for warning in (report.get("warnings") or [])[:10]:
        print(f"  warning {warning.get('message')}")


# --- jobs --------------------------------------------------------------------------------------------------------


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.jobs.list(status=args.status)
    _table(args, rows, ["id", "name", "status", "method", "weights", "current_step", "total_steps", "model"])
    return EXIT_OK


def cmd_jobs_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.jobs.get(args.id)
    if _json(args):
        _out(job)
    else:
        _show_job(job)
    return EXIT_OK


def cmd_jobs_create(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    with _client(args) as client:
        job = client.jobs.create(spec)
        if _json(args) and not args.watch:
            _out(job)
        else:
            print(f"job {job['id']} created: {job['status']}", file=sys.stderr if args.watch else sys.stdout)
        if args.watch:
            return watch_job(client, job["id"], as_json=_json(args))
    return EXIT_OK


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return watch_job(client, args.id, logs=args.logs, as_json=_json(args))


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.jobs.cancel(args.id)
    if _json(args):
        _out(job)
    else:
        print(
            f"job {job['id']}: {job['status']}"
            + (" (stopping)" if job["status"] not in ("cancelled", "failed", "succeeded") else "")
        )
    return EXIT_OK


def cmd_jobs_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.jobs.resume(args.id)
        if args.watch:
            return watch_job(client, job["id"], as_json=_json(args))
    if _json(args):
        _out(job)
    else:
        print(f"job {job['id']}: {job['status']}")
    return EXIT_OK


def watch_job(client: Client, job_id: int, *, logs: bool = False, as_json: bool = False) -> int:
    """Follow a job to its end, printing its progress; the exit code says how it ended (0, 1 failed, 4 cancelled)."""
    bar = ProgressBar()
    watcher = client.jobs.watch(job_id, logs=logs)
    total = 0
    last: JSON = {}
    try:
        for event in watcher:
            if as_json:
                _out(event, indent=None)
                continue
            kind = event.get("type")
            if kind == "metric":
                total = int(event.get("total_steps") or (watcher.job or {}).get("total_steps") or total or 0)
                if event.get("kind") == "eval":
                    bar.message(f"step {event.get('step')}: eval_loss {_num(event.get('eval_loss'))}")
                    continue
                last = event
                step = int(event.get("step") or 0)
                bar.update(
                    step / total if total else None,
                    f"step {step}/{total or '?'}  loss {_num(event.get('loss'))}  "
                    f"lr {_num(event.get('learning_rate'), '.2e')}  eta {human_duration(event.get('eta_s'))}",
                )
            elif kind == "log":
                bar.message(f"[{event.get('level', 'info')}] {event.get('line')}")
            elif kind == "status":
                phase = f" ({event['phase']})" if event.get("phase") not in (None, "", event.get("status")) else ""
                bar.message(f"job {job_id}: {event.get('status')}{phase}")
    finally:
        watcher.close()
    bar.finish()
    job = watcher.job or client.jobs.get(job_id)
    status = job["status"]
    if as_json:
        pass
    elif status == "succeeded":
        loss = f", final loss {_num(last.get('loss'))}" if last else ""
        print(f"job {job_id} succeeded: model {job.get('model')}{loss}")
    else:
        _err(f"job {job_id} {status}" + (f": {job.get('error')}" if job.get("error") else ""))
    return {"succeeded": EXIT_OK, "cancelled": EXIT_CANCELLED}.get(status, EXIT_FAILED)


def load_spec(source: str) -> JSON:
    """A job body from a YAML or JSON file (`-`: stdin)."""
    import yaml

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        spec = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"{source} is not valid {'JSON' if source.endswith('.json') else 'YAML'}: {exc}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{source} must hold a mapping of job fields (name, base_model, dataset, ...)")
    return spec


def _show_job(job: JSON) -> None:
    print(f"job {job['id']} '{job.get('name')}': {job['status']}" + (f" ({job['phase']})" if job.get("phase") else ""))
    print(
        f"  {job.get('method')} / {job.get('weights')} on {job.get('base_model_name')}, dataset "
        f"{job.get('dataset_name')} v{job.get('dataset_version')}"
    )
    print(f"  step {job.get('current_step')}/{job.get('total_steps')}, eta {human_duration(job.get('eta_s'))}")
    if job.get("error"):
        print(f"  error: {job['error']}")
    if job.get("model"):
        print(f"  model: {job['model']}")


# --- models ------------------------------------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.models.list()
    _table(args, rows, ["id", "name", "version", "method", "weights", "job"])
    return EXIT_OK


def cmd_models_base(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.models.base()
    _table(args, rows, ["id", "name", "source", "repo_id", "parameters", "status"])
    return EXIT_OK


def cmd_models_export(args: argparse.Namespace) -> int:
    with _client(args) as client:
        export = client.models.export(args.id, args.format, args.quantization)
        export_id = int(export["id"])
        what = " ".join(str(v) for v in (export.get("format"), export.get("quantization")) if v)
        _err(f"export {export_id} ({what}): {export['status']}")
        if not args.no_wait or args.download:
            bar = ProgressBar()
            export = _wait_with_bar(lambda: client.exports.wait(export_id, on_update=_task_bar(bar)), bar)
        if args.download:
            path = _download(client, export_id, args.download)
            export = {**export, "path": str(path)}
    if _json(args):
        _out(export)
    else:
        print(f"export {export['id']}: {export['status']}" + (f" -> {export['path']}" if "path" in export else ""))
    return EXIT_OK


def cmd_models_exports(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.models.exports(args.id)
    _table(args, rows, ["id", "format", "quantization", "status", "size_bytes", "file_name"])
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    with _client(args) as client:
        path = _download(client, args.id, args.output)
    if _json(args):
        _out({"export": args.id, "path": str(path)})
    else:
        print(path)
    return EXIT_OK


def cmd_models_push_hub(args: argparse.Namespace) -> int:
    with _client(args) as client:
        push = client.models.push_hub(args.id, args.repo, private=not args.public)
        _err(f"push {push['id']} to {push.get('repo_id') or args.repo}: {push['status']}")
        if not args.no_wait:
            bar = ProgressBar()
            push = _wait_with_bar(lambda: client.pushes.wait(push["id"], on_update=_task_bar(bar)), bar)
    if _json(args):
        _out(push)
    else:
        print(f"push {push['id']}: {push['status']}" + (f" {push['repo_url']}" if push.get("repo_url") else ""))
    return EXIT_OK


def cmd_models_ollama_import(args: argparse.Namespace) -> int:
    with _client(args) as client:
        row = client.models.ollama_import(args.id, args.name, quantization=args.quantization)
        _err(f"Ollama import {row['id']} as {row.get('ollama_name') or args.name}: {row['status']}")
        if not args.no_wait:
            bar = ProgressBar()
            row = _wait_with_bar(lambda: client.ollama.wait(row["id"], on_update=_task_bar(bar)), bar)
    if _json(args):
        _out(row)
    else:
        print(
            f"Ollama import {row['id']}: {row['status']}"
            + (f"; run it with: {row['run_command']}" if row.get("run_command") else "")
        )
    return EXIT_OK


def _download(client: Client, export_id: int, dest: str) -> Path:
    bar = ProgressBar()
    path = client.exports.download(
        export_id,
        dest,
        progress=lambda done, total: bar.update(
            done / total if total else None, f"downloading {human_bytes(done)} / {human_bytes(total)}"
        ),
    )
    bar.finish()
    return path


def _task_bar(bar: ProgressBar) -> Callable[[JSON], None]:
    def update(row: JSON) -> None:
        bar.update(float(row.get("progress") or 0.0), str(row.get("stage") or row.get("status") or ""))

    return update


def _wait_with_bar(wait: Callable[[], JSON], bar: ProgressBar) -> JSON:
    try:
        return wait()
    finally:
        bar.finish()


# --- helpers -----------------------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    try:
        creds = resolve(getattr(args, "url", None), getattr(args, "token", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if creds is None:
        raise UsageError(
            f"no platform URL or token: run `finetune login`, set FINETUNE_URL and FINETUNE_TOKEN, or "
            f"pass --url and --token (config: {config_path()})"
        )
    return Client(creds.url, creds.token)


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _out(value: Any, indent: int | None = 2) -> None:
    print(json.dumps(value, indent=indent, default=str), flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _prompt(text: str) -> str:
    try:
        return input(text).strip()
    except EOFError:
        raise UsageError("no URL given (--url or FINETUNE_URL)") from None


def _num(value: Any, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "-"


def _table(args: argparse.Namespace, rows: list[JSON], columns: list[str]) -> None:
    if _json(args):
        _out(rows)
        return
    cells = [[str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
