"""``python -m converters.synthetic``: write one synthetic recording (EDF+, HDF5 or a BIDS iEEG tree)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from .profiles import PATIENTS, PatientProfile, with_n_channels
from .writers import write_bids, write_edf, write_hdf5


def _describe(key: str, p: PatientProfile) -> str:
    return (
        f"  {key}: {p.morphology}, {p.spike_amplitude_uv:g} uV, {p.spike_rate_per_minute:g}/min, "
        f"{p.n_chans} channels ({', '.join(p.layout)}), {p.sfreq:g} Hz"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m converters.synthetic",
        description="Write a synthetic sEEG recording with spikes, background and artifacts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m converters.synthetic --patient A --duration 600 --format edf --out /tmp/a.edf\n"
        "  python -m converters.synthetic --patient A --duration 3600 --sfreq 32000 --n-chans 24 \\\n"
        "      --format hdf5 --out /tmp/a32k.h5\n"
        "  python -m converters.synthetic --patient C --duration 300 --format bids --out /tmp/bids\n\n"
        "patients:\n"
        + "\n".join(_describe(k, p) for k, p in PATIENTS.items())
        + "\n\nEDF and BIDS round the duration up to whole seconds. The written path is printed.",
    )
    parser.add_argument("--patient", choices=sorted(PATIENTS), default="A", help="default patient profile")
    parser.add_argument("--duration", type=float, required=True, help="seconds to generate")
    parser.add_argument(
        "--format",
        choices=("edf", "hdf5", "bids"),
        default="edf",
        help="EDF+ with annotations, HDF5 (dataset 'data', float32 uV) or a BIDS iEEG tree",
    )
    parser.add_argument("--out", type=Path, required=True, help="output file (edf, hdf5) or BIDS root")
    parser.add_argument("--sfreq", type=float, help="override the sampling rate (Hz)")
    parser.add_argument("--n-chans", type=int, help="override the number of channels (layout resized)")
    parser.add_argument("--seed", type=int, help="override the random seed")
    parser.add_argument("--subject", help="BIDS subject label (default: the patient name)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    profile = PATIENTS[args.patient]
    if args.sfreq:
        profile = profile.with_(sfreq=args.sfreq)
    if args.n_chans:
        profile = with_n_channels(profile, args.n_chans)
    if args.seed is not None:
        profile = profile.with_(seed=args.seed)
    if args.format == "edf":
        written = write_edf(args.out, profile, args.duration)
    elif args.format == "hdf5":
        written = write_hdf5(args.out, profile, args.duration)
    else:
        written = write_bids(args.out, args.subject or profile.name, profile, args.duration)
    print(written)
    return 0
