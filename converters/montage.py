"""Channel selection and montages: bipolar derivations of adjacent sEEG contacts."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

DATA_CH_TYPES = ("eeg", "seeg", "ecog", "dbs")
MONTAGES = ("auto", "bipolar", "monopolar", "average")

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
    scalp = sum(clean_name(n).lower() in _SCALP_10_20 for n in ch_names)
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


def make_montage(kind: str, ch_names: list[str], ch_types: list[str]) -> Montage:
    """Build the montage for the picked channels; ``auto`` is bipolar for sEEG, monopolar otherwise."""
    if kind not in MONTAGES:
        raise ValueError(f"montage must be one of {', '.join(MONTAGES)}, got {kind!r}")
    n = len(ch_names)
    if kind == "auto":
        kind = "bipolar" if looks_like_seeg(ch_names, ch_types) else "monopolar"
    if kind == "monopolar":
        return Montage("monopolar", list(ch_names), np.eye(n, dtype=np.float32))
    if kind == "average":
        matrix = np.eye(n, dtype=np.float32) - np.float32(1.0 / n)
        return Montage("average", list(ch_names), matrix)
    pairs = bipolar_pairs(ch_names)
    if not pairs:
        raise ValueError(
            "bipolar montage needs adjacent contacts on one shaft (names like A1, A2, B'3); "
            f"none found among {', '.join(ch_names)}"
        )
    matrix = np.zeros((len(pairs), n), dtype=np.float32)
    for row, (i, j) in enumerate(pairs):
        matrix[row, i], matrix[row, j] = 1.0, -1.0
    names = [f"{clean_name(ch_names[i])}-{clean_name(ch_names[j])}" for i, j in pairs]
    unpaired = sorted(set(range(n)) - {k for pair in pairs for k in pair})
    if unpaired:
        logger.info("bipolar montage leaves out unpaired contacts: %s", ", ".join(ch_names[k] for k in unpaired))
    return Montage("bipolar", names, matrix)
