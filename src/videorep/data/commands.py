"""``videorep data davis``: download, check and unpack the official DAVIS-2017 archive."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``videorep data davis`` to the ``videorep`` parser."""
    from videorep.data.download import DATA_ENV, DAVIS_2017_URL

    data = subparsers.add_parser("data", help="download evaluation data")
    sub = data.add_subparsers(dest="data_command", metavar="DATASET")
    sub.required = True
    p = sub.add_parser(
        "davis",
        help="DAVIS-2017 trainval 480p (also holds DAVIS-2016): download, check, unpack",
        description="Download the official DAVIS-2017 trainval 480p archive into OUT (resuming "
        "a broken download from OUT/<archive>.part), check it (--sha256, and every member's "
        "CRC) and unpack it to OUT/DAVIS. Prints the root to pass as --root / --davis-root.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"target folder (default: ${DATA_ENV} or ~/.cache/videorep/data)",
    )
    p.add_argument("--url", default=DAVIS_2017_URL, help="archive URL (a mirror)")
    p.add_argument(
        "--sha256",
        default=None,
        help="expected SHA-256 of the archive (none is published; without it the digest is "
        "recorded in OUT/<archive>.sha256)",
    )
    p.add_argument("--retries", type=int, default=5, help="resumes of a broken transfer")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_data_davis)

    from videorep.data.labelled_synthetic_cli import add_labelled_synthetic_command

    add_labelled_synthetic_command(sub)


def run_data_davis(args: argparse.Namespace) -> int:
    from videorep.data.download import data_home, fetch_davis
    from videorep.errors import VideorepError

    if args.retries < 0:
        raise VideorepError(f"--retries {args.retries}: must be at least 0")
    out = args.out or data_home()
    root = fetch_davis(
        out, args.url, args.sha256, retries=args.retries, progress=not args.no_progress
    )
    print(root)
    return 0
