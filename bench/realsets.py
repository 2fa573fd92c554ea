"""Real-recording labelled test sets in the FAT2019 layout, built from Debian packages.

Each set: 8-10 classes, ~15 curated + ~15 noisy clips per class, 100 test clips whose
*sources* (instruments, sample libraries, drum kits) never appear in training.

* ``fluid_gm``: FluidR3 GM SoundFont (``fluid-soundfont-gm``, MIT), recorded instrument
  samples; classes are General MIDI families (Piano, Mallets, Organ, Guitar, Bass,
  Strings, Brass, Reed, Pipe, Drums); the sf2 instruments in ``FLUID_TEST`` are test
  only. Synth patches and saw/sine/square samples are never used.
* ``gm_crosslib``: the same ten families, trained on every FluidR3 instrument, tested on
  the independent ``freepats`` library (GPL-2+, Gravis .pat): a held-out library.
* ``h2_kits``: acoustic kits of ``hydrogen-drumkits`` (GPL-2, CC-BY, CC-BY-SA, CC0 per
  kit): kick, snare, side stick, closed/open hi-hat, tom, ride, crash; the kits of
  ``H2_TEST`` are test only. Left out: electronic kits, Audiophob (8-bit, noise toms)
  and ``hydrogen-data``'s GMRockKit (the same recordings as The Black Pearl).

Each package is fetched with ``apt-get download`` into ``--cache`` and unpacked with
``dpkg-deb -x``; sf2/pat samples are decoded here (stereo pairs stay stereo). Clips: cut
to 10 s, dropped when near-silent, duplicate or short (tonal < 0.3 s, hits < 0.1 s, then
padded to 0.3 s), peak-normalised to -6 dBFS. Per class: curated = clean clips; noisy =
other ones, pink or brown noise at 0-15 dB SNR, a quarter (seeded) labelled wrongly;
test = held-out-source clips, a third of the files two-class mixtures (parts at -9..0
dB). ``provenance.csv``: true labels, sources, origins. Seeded: a rebuild gives the same
files. ``bench/quality.py`` trains on them beside the built-in linear baseline.

    .venv/bin/python bench/realsets.py --out /work/realsets [--only NAME]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import struct
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# ---- the per-set choices: class -> sources; which sources are test only ------------------
FLUID = {  # FluidR3 sf2 instrument names (a sample shared by two goes to the first)
    "Piano": ["Yamaha Grand Piano", "Electric Piano", "Rhodes EP 1", "Harpsichord"],
    "Mallets": ["Celesta", "Glockenspiel", "Music Box", "Marimba", "Xylophone",
                "Tubular Bells", "Dulcimer", "Vibraphone"],
    "Organ": ["DrawbarOrgan", "Percussive Organ", "Rock Organ", "Church Organ", "Accordian",
              "Harmonica"],
    "Guitar": ["Nylon Guitar", "Steel String Guitar", "Jazz Guitar", "Clean Guitar",
               "Palm Muted Guitar", "Overdrive Guitar", "Distortion Guitar", "Guitar Harmonics"],
    "Bass": ["Acoustic Bass", "Fingered Bass", "Picked Bass", "Fretless Bass", "Slap Bass",
             "Pop Bass"],
    "Strings": ["Violin", "Viola", "Cello", "Contrabass", "Pizzicato", "Orchestral Harp",
                "Strings"],
    "Brass": ["Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horns", "Brass Left"],
    "Reed": ["Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone", "Oboe", "English Horn",
             "Bassoon", "Clarinet"],
    "Pipe": ["Piccolo", "Flute", "Recorder", "Pan Flute", "Bottle Chiff", "Shakuhachi",
             "Whistle", "Ocarina"],
    "Drums": ["Std Kick", "Std Kick 2", "Std Kick 3", "Std Kick 4", "Std Kick 6", "Room Kick",
              "Std Snare 1", "Std Snare 2", "Std Snare 3", "Std Snare 4", "Brush Snares",
              "Std Tom", "Hi Hats", "Crashes & Rides", "Power Kick", "Power Kick 1",
              "Power Kick 2", "Power Kick 3", "Power Snares", "Power/Room Snares 1",
              "Power/Room Snares 2", "Power Toms"],
}  # fmt: skip
FLUID_TEST = ["Electric Piano", "Xylophone", "Dulcimer", "Rock Organ", "DrawbarOrgan",
              "Steel String Guitar", "Distortion Guitar", "Picked Bass", "Fretless Bass",
              "Viola", "Contrabass", "Brass Left", "Muted Trumpet", "Tenor Sax", "Oboe",
              "Recorder", "Ocarina", "Shakuhachi", "Whistle", "Power Kick", "Power Kick 1",
              "Power Kick 2", "Power Kick 3", "Power Snares", "Power/Room Snares 1",
              "Power/Room Snares 2", "Power Toms"]  # fmt: skip
FREEPATS = {  # freepats patch numbers: Tone_000 GM programs, Drum_000 GM drum notes
    "Piano": [0, 1, 2, 3, 4, 6, 7], "Mallets": list(range(8, 16)),
    "Organ": list(range(16, 24)), "Guitar": list(range(24, 32)), "Bass": list(range(32, 38)),
    "Strings": [*range(40, 47), 48, 49], "Brass": list(range(56, 62)),
    "Reed": list(range(64, 72)), "Pipe": list(range(72, 80)),
    "Drums": [1035, 1036, 1038, 1040, *range(1041, 1054), 1055, 1057, 1059],  # 1000 + note
}  # fmt: skip
H2_CLASSES = [  # hydrogen instrument name (lower case) -> class; the first match wins
    ("Kick", r"kick|bass ?drum"), ("SideStick", r"stick|rim click"),
    ("Snare", r"snare(?!.*roll)"), ("HiHatClosed", r"(hat|hh).*(clos|pedal)|(clos|pedal).*hh"),
    ("HiHatOpen", r"(hat|hh).*(open|semi)|open.*hh"), ("Tom", r"tom"),
    ("Ride", r"ride(?!.*crash)"), ("Crash", r"(crash|splash|china)(?!.*ride)"),
]  # fmt: skip
H2_TRAIN = ["BJA_Pacific", "Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3",
            "The Black Pearl 1.0"]  # fmt: skip
H2_TEST = ["ForzeeStereo", "ColomboAcousticDrumkit", "rumpf_kit_z01_h2"]
SETS = {  # test: source names or library prefixes; hits: classes of short percussive clips
    "fluid_gm": {"load": [("fluid", FLUID)], "test": FLUID_TEST, "hits": ["Drums"], "seed": 11},
    "gm_crosslib": {"load": [("fluid", FLUID), ("freepats", FREEPATS)], "test": ["freepats"],
                    "hits": ["Drums"], "seed": 12},
    "h2_kits": {"load": [("h2", H2_CLASSES)], "test": H2_TEST,
                "hits": [c for c, _ in H2_CLASSES], "seed": 13},
}  # fmt: skip
PACKAGES = {"fluid": "fluid-soundfont-gm", "freepats": "freepats", "h2": "hydrogen-drumkits"}
N_CURATED, N_NOISY, N_TEST, MIX_SHARE, FLIP_SHARE = 15, 15, 100, 1 / 3, 0.25
MAX_S, MIN_TONAL_S, MIN_HIT_S, PAD_S, SILENT_DB, PEAK = 10.0, 0.3, 0.1, 0.3, -60.0, 0.5
SYNTH_SAMPLE = re.compile(r"sine|saw|square", re.I)
SPLITS = {"curated": ("train_curated", "train_curated.csv"),
          "noisy": ("train_noisy", "train_noisy.csv"),
          "test": ("test", "test_labels.csv")}  # fmt: skip


@dataclass
class Clip:
    label: str
    source: str  # "library:instrument-or-kit"
    origin: str
    audio: np.ndarray  # float32 (frames, channels)
    sr: int


def fetch(pkg: str, cache: Path) -> Path:
    """``cache/pkg``: the package unpacked (downloaded first unless its .deb is there)."""
    root = cache / pkg
    if (root / ".unpacked").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob(f"{pkg}_*.deb")):
        if subprocess.run(["apt-get", "download", pkg], cwd=cache).returncode:
            raise SystemExit(f"apt-get download {pkg} failed (run 'apt-get update' first?)")
    deb = sorted(cache.glob(f"{pkg}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / ".unpacked").touch()
    return root


def _chunks(buf: bytes, off: int, end: int) -> dict[bytes, tuple[int, int]]:
    """RIFF chunks in buf[off:end]: id (a LIST by its type) -> (data offset, size)."""
    out = {}
    while off + 8 <= end:
        cid, size = struct.unpack_from("<4sI", buf, off)
        out[buf[off + 8 : off + 12] if cid == b"LIST" else cid] = (off + 8, size)
        off += 8 + size + (size & 1)
    return out


def _name(raw: bytes) -> str:
    return raw.split(b"\0")[0].decode("latin1").strip()


def load_fluid(root: Path, classes: dict[str, list[str]]) -> list[Clip]:
    """FluidR3 samples of the named sf2 instruments; stereo pairs become stereo clips."""
    buf = (root / "usr/share/sounds/sf2/FluidR3_GM.sf2").read_bytes()
    top = _chunks(buf, 12, len(buf))
    (pd_off, pd_size), (sd_off, sd_size) = top[b"pdta"], top[b"sdta"]
    pd = _chunks(buf, pd_off + 4, pd_off + pd_size)
    smpl_off, smpl_size = _chunks(buf, sd_off + 4, sd_off + sd_size)[b"smpl"]

    def recs(tag: bytes, fmt: str) -> list[tuple]:
        (o, s), n = pd[tag], struct.calcsize(fmt)
        return [struct.unpack_from(fmt, buf, o + i * n) for i in range(s // n)]

    inst, ibag, igen = recs(b"inst", "<20sH"), recs(b"ibag", "<HH"), recs(b"igen", "<Hh")
    shdr = recs(b"shdr", "<20sIIIIIBbHH")
    pcm = np.frombuffer(buf, "<i2", smpl_size // 2, smpl_off)
    by_name = {_name(r[0]): i for i, r in enumerate(inst[:-1])}
    seen, clips = set(), []
    for label, names in classes.items():
        for name in names:
            i, src = by_name[name], f"FluidR3:{name}"
            gens = range(ibag[inst[i][1]][0], ibag[inst[i + 1][1]][0])
            for s in sorted({igen[g][1] & 0xFFFF for g in gens if igen[g][0] == 53}):  # sampleID
                sname, start, end, *_, sr, _, _, link, kind = shdr[s]
                if s in seen or kind == 2 or SYNTH_SAMPLE.search(_name(sname)):
                    continue  # a right channel comes with its left; synthetic waves never
                chans = [pcm[start:end]]
                if kind == 4:  # the left of a stereo pair
                    seen.add(link)
                    r0, n = shdr[link][1], min(end - start, shdr[link][2] - shdr[link][1])
                    chans = [pcm[start : start + n], pcm[r0 : r0 + n]]
                seen.add(s)
                audio = np.stack(chans, axis=1).astype(np.float32) / 32768
                clips.append(Clip(label, src, f"FluidR3:{_name(sname)}#{s}", audio, sr))
    return clips


def _read_pat(path: Path) -> list[tuple[np.ndarray, int]]:
    """The samples of a Gravis Ultrasound patch (one instrument, one layer)."""
    b = path.read_bytes()
    if not b.startswith(b"GF1PATCH"):
        raise ValueError(f"{path}: not a GF1 patch")
    off, out = 129 + 63 + 47, []  # patch, instrument and layer headers
    for _ in range(b[129 + 63 + 6]):
        size, _, _, rate = struct.unpack_from("<IIIH", b, off + 8)  # then loop start/end
        modes = b[off + 55]
        raw, off = b[off + 96 : off + 96 + size], off + 96 + size
        bits16, unsigned = modes & 1, modes & 2
        kind = ("<u2" if unsigned else "<i2") if bits16 else ("u1" if unsigned else "i1")
        x, full = np.frombuffer(raw, kind), 32768.0 if bits16 else 128.0
        out.append((((x.astype(np.float32) - (full if unsigned else 0.0)) / full)[:, None], rate))
    return out


def load_freepats(root: Path, classes: dict[str, list[int]]) -> list[Clip]:
    clips, base = [], root / "usr/share/midi/freepats"
    for path in sorted(base.glob("Tone_000/*.pat")) + sorted(base.glob("Drum_000/*.pat")):
        num = int(path.name[:3]) + (1000 if path.parent.name == "Drum_000" else 0)
        label = next((c for c, nums in classes.items() if num in nums), None)
        for k, (audio, sr) in enumerate(_read_pat(path) if label else []):
            origin = f"freepats:{path.name}#{k}"
            clips.append(Clip(label, f"freepats:{path.stem}", origin, audio, sr))
    return clips


def load_h2(root: Path, classes: list[tuple[str, str]], kits: list[str]) -> list[Clip]:
    clips = []
    for kit in kits:
        kdir = root / "usr/share/hydrogen/data/drumkits" / kit
        tree = ET.parse(kdir / "drumkit.xml").getroot()
        ns = tree.tag[: tree.tag.index("}") + 1] if tree.tag.startswith("{") else ""
        for ins in tree.iter(ns + "instrument"):
            name = (ins.findtext(ns + "name") or "").lower()
            label = next((c for c, rx in classes if re.search(rx, name)), None)
            for f in ins.iter(ns + "filename") if label else []:
                if (kdir / f.text).exists():
                    audio, sr = sf.read(kdir / f.text, dtype="float32", always_2d=True)
                    clips.append(Clip(label, f"h2:{kit}", f"h2:{kit}/{f.text}", audio, sr))
    return clips


def load_set(spec: dict, cache: Path) -> list[Clip]:
    """The set's usable clips in a fixed order, duplicates (same audio) dropped."""
    raw = []
    for kind, classes in spec["load"]:
        root = fetch(PACKAGES[kind], cache)
        if kind == "h2":
            raw += load_h2(root, classes, H2_TRAIN + H2_TEST)
        else:
            raw += (load_fluid if kind == "fluid" else load_freepats)(root, classes)
    clips, seen = [], set()
    for c in sorted(raw, key=lambda c: (c.label, c.source, c.origin)):
        x = c.audio[: int(MAX_S * c.sr)]
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        min_s = MIN_HIT_S if c.label in spec["hits"] else MIN_TONAL_S
        digest = hashlib.md5(np.round(x * 32767).astype(np.int16).tobytes()).hexdigest()
        if len(x) < min_s * c.sr or rms <= 0 or 20 * np.log10(rms) < SILENT_DB or digest in seen:
            continue
        seen.add(digest)
        x = np.pad(x, ((0, max(0, int(np.ceil(PAD_S * c.sr)) - len(x))), (0, 0)))
        x *= PEAK / np.max(np.abs(x))  # level says velocity layer / library, not class
        clips.append(Clip(c.label, c.source, c.origin, x, c.sr))
    return clips


def add_noise(clip: Clip, rng: np.random.Generator) -> np.ndarray:
    """Pink or brown noise at a 0-15 dB signal-to-noise ratio."""
    x, power = clip.audio.astype(np.float64), rng.choice([1.0, 2.0])
    n, ch = x.shape
    spec = rng.standard_normal((n // 2 + 1, ch)) + 1j * rng.standard_normal((n // 2 + 1, ch))
    f = np.maximum(np.arange(n // 2 + 1, dtype=np.float64), 1.0)
    noise = np.fft.irfft(spec / f[:, None] ** (power / 2), n=n, axis=0)
    noise *= np.sqrt(np.mean(x**2) / (np.mean(noise**2) + 1e-20))
    return x + noise * 10 ** (-rng.uniform(0.0, 15.0) / 20)


def mix(a: Clip, b: Clip, rng: np.random.Generator) -> np.ndarray:
    """a + b at a's rate (b linearly resampled when needed), each at -9..0 dB."""
    xa, xb = a.audio.astype(np.float64), b.audio.astype(np.float64)
    if b.sr != a.sr:
        t = np.arange(int(len(xb) * a.sr / b.sr)) * (b.sr / a.sr)
        xb = np.stack([np.interp(t, np.arange(len(xb)), c) for c in xb.T], axis=1)
    out = np.zeros((max(len(xa), len(xb)), max(xa.shape[1], xb.shape[1])))
    for x in (xa, xb):
        gain = 10 ** (rng.uniform(-9, 0) / 20)
        out[: len(x)] += np.broadcast_to(x, (len(x), out.shape[1])) * gain
    return out[: int(MAX_S * a.sr)]


def split(clips: list[Clip], spec: dict, rng: np.random.Generator) -> dict[str, list[list[Clip]]]:
    """Split -> files (each a list of the clips it sums); test sources are test only."""
    train, test = {}, {}  # label -> clips
    for c in clips:
        held_out = {*c.source.split(":", 1)} & {*spec["test"]}
        (test if held_out else train).setdefault(c.label, []).append(c)
    out: dict[str, list[list[Clip]]] = {"curated": [], "noisy": [], "test": []}
    for label in sorted(train):
        pool = [train[label][i] for i in rng.permutation(len(train[label]))]
        n_cur = min(N_CURATED, len(pool) // 2)
        out["curated"] += [[c] for c in pool[:n_cur]]
        out["noisy"] += [[c] for c in pool[n_cur : n_cur + N_NOISY]]
    queues = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(test.items())}
    pool = []  # round robin over the classes, so that any prefix is balanced
    while any(queues.values()):
        pool += [queues[c].pop() for c in rng.permutation([c for c, q in queues.items() if q])]
    n_mix = round(N_TEST * MIX_SHARE)
    n_single = min(N_TEST - n_mix, max(len(pool) - 2 * n_mix, len(pool) // 3))
    out["test"], rest = [[c] for c in pool[:n_single]], pool[n_single:]
    while len(rest) >= 2 and len(out["test"]) < N_TEST:
        a = rest.pop(0)
        j = next((j for j, c in enumerate(rest) if c.label != a.label), None)
        if j is None:
            break
        out["test"].append([a, rest.pop(j)])
    return out


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def write_set(name: str, out: Path, clips: list[Clip], spec: dict) -> list[list[str]]:
    """Writes the FAT2019 layout under out; returns the provenance rows."""
    rng = np.random.default_rng(spec["seed"])
    files, vocab, prov = split(clips, spec, rng), sorted({c.label for c in clips}), []
    flip = set(rng.permutation(len(files["noisy"]))[: round(len(files["noisy"]) * FLIP_SHARE)])
    for sub, (folder, csv_name) in SPLITS.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for old in (out / folder).glob("*.wav"):
            old.unlink()
        rows = []
        for i, group in enumerate(files[sub]):
            fn = hashlib.sha1(f"{name}/{sub}/{i}".encode()).hexdigest()[:10] + ".wav"
            given = true = ",".join(sorted(c.label for c in group))
            if sub == "noisy":
                x = add_noise(group[0], rng)
                given = str(rng.choice([v for v in vocab if v != true])) if i in flip else true
            else:
                x = group[0].audio if len(group) == 1 else mix(group[0], group[1], rng)
            peak = float(np.max(np.abs(x)))
            sf.write(out / folder / fn, x * min(1.0, 0.99 / peak), group[0].sr, subtype="PCM_16")
            rows.append([fn, given])
            src, origin = ("+".join(getattr(c, k) for c in group) for k in ("source", "origin"))
            prov.append([fn, sub, given, true, src, origin, f"{len(x) / group[0].sr:.3f}"])
        _write_csv(out / csv_name, ["fname", "labels"], rows)
    zeros = [[r[0]] + [0] * len(vocab) for r in prov if r[1] == "test"]
    _write_csv(out / "sample_submission.csv", ["fname", *vocab], zeros)
    header = ["fname", "split", "labels", "true_labels", "sources", "origin", "seconds"]
    _write_csv(out / "provenance.csv", header, prov)
    return prov


def build(name: str, out: Path, cache: Path) -> None:
    clips = load_set(SETS[name], cache)
    prov = write_set(name, out / name, clips, SETS[name])
    minutes = sum(float(r[6]) for r in prov) / 60
    print(f"{name}: {len(prov)} files, {minutes:.1f} min, from {len(clips)} usable clips")
    for sub in SPLITS:
        rows = [r for r in prov if r[1] == sub]
        per = {v: sum(v in r[3].split(",") for r in rows) for v in sorted({c.label for c in clips})}
        print(f"  {sub:8s} {len(rows):4d} files  " + " ".join(f"{k}={v}" for k, v in per.items()))


def tiny(out: Path) -> None:
    """A smoke run of the split and writing on the drums in ../shared/data/drums."""
    drums = Path(__file__).resolve().parents[2] / "shared" / "data" / "drums"
    rows = list(csv.DictReader((drums / "labels.csv").open()))
    clips = [Clip(r["labels"], f"drums:{r['kit']}", r["fname"], *_load(drums / r["fname"]))
             for r in rows]  # fmt: skip
    spec = {"test": sorted({r["kit"] for r in rows})[:2], "hits": [], "seed": 1}
    write_set("drums_tiny", out / "drums_tiny", clips, spec)
    print(f"drums_tiny: {sum(1 for _ in (out / 'drums_tiny').rglob('*.wav'))} files in {out}")


def _load(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return audio, sr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a smoke run on ../shared/data/drums")
    ap.add_argument("--out", type=Path, default=Path("/work/realsets"))
    ap.add_argument("--cache", type=Path, default=None, help="default: OUT/debs")
    ap.add_argument("--only", choices=sorted(SETS), action="append", help="repeatable")
    args = ap.parse_args()
    if args.tiny:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return tiny(Path(tmp))
    for name in args.only or list(SETS):
        build(name, args.out, args.cache or args.out / "debs")


if __name__ == "__main__":
    main()
