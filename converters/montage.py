"""Montages: bipolar derivations of adjacent sEEG contacts, the scalp "double banana", referential, average."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

DATA_CH_TYPES = ("eeg", "seeg", "ecog", "dbs")
MONTAGES = ("auto", "bipolar", "banana", "referential", "monopolar", "average")  # monopolar: same as referential
# The longitudinal bipolar montage of scalp 10-20 EEG, chain by chain (left/right temporal, left/right
# parasagittal, midline); each electrode with its alternative name (10-10: T7/T8/P7/P8 for T3/T4/T5/T6).
DOUBLE_BANANA = (
    ("Fp1", "F7", "T3", "T5", "O1"),
    ("Fp2", "F8", "T4", "T6", "O2"),
    ("Fp1", "F3", "C3", "P3", "O1"),
    ("Fp2", "F4", "C4", "P4", "O2"),
    ("Fz", "Cz", "Pz"),
)
ALTERNATIVE_NAMES = {"t3": "t7", "t4": "t8", "t5": "p7", "t6": "p8"}
MIN_BANANA_PAIRS = 4  # fewer derivations than this: the recording is not a 10-20 scalp recording

# "A1", "B'3", "LA10", "TP'12", also "EEG A1-Ref" / "SEEG B'2" after cleaning
_CONTACT = re.compile(r"^(?P<shaft>[A-Za-z]+'?)\s*(?P<number>\d+)$")
_PREFIX = re.compile(r"^(?:EEG|SEEG|ECOG|POL|EEG-)\s+", re.IGNORECASE)
_SUFFIX = re.compile(r"[-_ ](?:REF|Ref|ref|LE|AVG|Avg)$")
_SCALP_10_20 = set(
    (
        "fp1 fp2 fpz af3 af4 af7 af8 afz f1 f2 f3 f4 f5 f6 f7 f8 fz fc1 fc2 fc3 fc4 fc5 fc6 ft7 ft8 ft9 ft10 fcz "
        "c1 c2 c3 c4 c5 c6 cz t3 t4 t5 t6 t7 t8 cp1 cp2 cp3 cp4 cp5 cp6 cpz tp7 tp8 tp9 tp10 p1 p2 p3 p4 p5 p6 "
        "p7 p8 p9 p10 pz po3 po4 po7 po8 poz o1 o2 oz iz"
    ).split()
)


@dataclass(frozen=True)
class Contact:
    shaft: str
    number: int


@dataclass(frozen=True)
class Montage:
    """A linear map from the recorded (picked) channels to derivations: ``out = matrix @ picked``."""

    kind: str
    ch_names: list[str]  # derivation names, e.g. "A1-A2"
    matrix: np.ndarray  # float32 [n_out, n_in]

    def apply(self, data: np.ndarray) -> np.ndarray:
        if self.kind == "monopolar":
            return data
        return self.matrix @ data


def clean_name(name: str) -> str:
    """Strip vendor decorations such as ``EEG A1-Ref`` -> ``A1``."""
    return _SUFFIX.sub("", _PREFIX.sub("", name.strip())).strip()


def is_scalp_electrode(name: str) -> bool:
    """Whether ``name`` (decorations stripped) is a 10-20 / 10-10 scalp electrode (``EEG Fp1-Ref``, ``T3``)."""
    return clean_name(name).lower() in _SCALP_10_20


def parse_contact(name: str) -> Contact | None:
    """``"B'3"`` -> Contact("B'", 3); None when the name is not shaft + contact number."""
    match = _CONTACT.match(clean_name(name))
    if match is None:
        return None
    return Contact(match["shaft"].upper(), int(match["number"]))


def looks_like_seeg(ch_names: list[str], ch_types: list[str]) -> bool:
    """sEEG/ECoG by type, or names that parse as shaft contacts and are mostly not 10-20 scalp labels."""
    if any(t in ("seeg", "ecog", "dbs") for t in ch_types):
        return True
    scalp = sum(map(is_scalp_electrode, ch_names))
    return scalp < len(ch_names) / 2 and bool(bipolar_pairs(ch_names))


def bipolar_pairs(ch_names: list[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of adjacent contacts ``n`` and ``n + 1`` on the same shaft, in recording order."""
    index: dict[Contact, int] = {}
    for i, name in enumerate(ch_names):
        contact = parse_contact(name)
        if contact is not None:
            index.setdefault(contact, i)
    pairs = []
    for contact, i in index.items():
        j = index.get(Contact(contact.shaft, contact.number + 1))
        if j is not None:
            pairs.append((i, j))
    return sorted(pairs)


def banana_pairs(ch_names: list[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of the double banana's derivations present in ``ch_names``, chain by chain."""
    index: dict[str, int] = {}
    for i, name in enumerate(ch_names):
        index.setdefault(clean_name(name).lower(), i)

    def find(electrode: str) -> int | None:
        key = electrode.lower()
        return index[key] if key in index else index.get(ALTERNATIVE_NAMES.get(key, key))

    pairs: list[tuple[int, int]] = []
    for chain in DOUBLE_BANANA:
        for a, b in zip(chain, chain[1:]):
            first, second = find(a), find(b)
            if first is not None and second is not None:
                pairs.append((first, second))
    return pairs


# the bipolar montages: how pairs are found, and what they need
_PAIRINGS = {
    "banana": (
        banana_pairs,
        "the double banana needs scalp 10-20 electrodes (Fp1, F7, T3/T7, ..., O2); none of its pairs found",
    ),
    "bipolar": (
        bipolar_pairs,
        "bipolar montage needs adjacent contacts on one shaft (names like A1, A2, B'3); none found",
    ),
}


def make_montage(kind: str, ch_names: list[str], ch_types: list[str]) -> Montage:
    """Build the montage for the picked channels.

    ``auto`` is the shaft bipolar montage for sEEG, the double banana for scalp 10-20 EEG (at least
    ``MIN_BANANA_PAIRS`` of its derivations recorded), referential otherwise.
    """
    if kind not in MONTAGES:
        raise ValueError(f"montage must be one of {', '.join(MONTAGES)}, got {kind!r}")
    n = len(ch_names)
    if kind == "auto":
        if looks_like_seeg(ch_names, ch_types):
            kind = "bipolar"
        else:
            kind = "banana" if len(banana_pairs(ch_names)) >= MIN_BANANA_PAIRS else "referential"
    if kind in ("monopolar", "referential"):
        return Montage("monopolar", list(ch_names), np.eye(n, dtype=np.float32))
    if kind == "average":
        matrix = np.eye(n, dtype=np.float32) - np.float32(1.0 / n)
        return Montage("average", list(ch_names), matrix)
    pairs_of, needs = _PAIRINGS[kind]
    pairs = pairs_of(ch_names)
    if not pairs:
        raise ValueError(f"{needs} among {', '.join(ch_names)}")
    return _bipolar(kind, ch_names, pairs)


def _bipolar(kind: str, ch_names: list[str], pairs: list[tuple[int, int]]) -> Montage:
    """The derivations ``ch_names[i] - ch_names[j]`` of ``pairs``, named ``"i-j"`` with the cleaned names."""
    matrix = np.zeros((len(pairs), len(ch_names)), dtype=np.float32)
    for row, (i, j) in enumerate(pairs):
        matrix[row, i], matrix[row, j] = 1.0, -1.0
    names = [f"{clean_name(ch_names[i])}-{clean_name(ch_names[j])}" for i, j in pairs]
    unpaired = sorted(set(range(len(ch_names))) - {k for pair in pairs for k in pair})
    if unpaired:
        logger.info("%s montage leaves out unpaired channels: %s", kind, ", ".join(ch_names[k] for k in unpaired))
    return Montage(kind, names, matrix)
