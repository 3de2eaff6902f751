"""Build `offline.html`, the page template `dvc plots show` and `dvc plots diff` fill in.

DVC's own page loads Vega, Vega-Lite and vega-embed from cdn.jsdelivr.net, so without network
the page is blank. `.dvc/config` points `plots.html_template` at `offline.html`, which carries
the three libraries inline (and their licence notices): the page DVC writes then renders from
the file alone, offline, in any browser.

DVC fills a template by plain text substitution of three brace-wrapped names: the plot
divisions (required), the refresh tag, and the library script tags. The template holds the
first two and deliberately not the third, so DVC's CDN tags are never written.

Rebuild (with network to the npm registry), from the repository root:

    python .dvc/html/build_offline_template.py            # `npm pack`s the pinned versions
    python .dvc/html/build_offline_template.py a.tgz ...  # or from tarballs already fetched

Standard library only; the output depends only on the three tarballs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "offline.html"

# The libraries in load order (vega-lite needs vega; vega-embed needs both): npm name, the
# version pinned, the minified browser bundle inside the tarball.
PACKAGES = (
    ("vega", "5.33.1", "package/build/vega.min.js"),
    ("vega-lite", "5.23.0", "package/build/vega-lite.min.js"),
    ("vega-embed", "6.29.0", "package/build/vega-embed.min.js"),
)

# The vega tarball ships no LICENSE file (its package.json says BSD-3-Clause); this is the
# LICENSE of github.com/vega/vega. vega-lite and vega-embed ship theirs, read from the tarball.
VEGA_LICENSE = """\
Copyright (c) 2015-2023, University of Washington Interactive Data Lab
All rights reserved.
"""

BSD_3_CLAUSE_TERMS = """\
Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software
  without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

# What DVC substitutes; none may occur inside the inlined code, or DVC would rewrite it.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """\
<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC Plot</title>
<!--
This page renders offline: Vega, Vega-Lite and vega-embed are inlined below instead of being
loaded from a CDN. Built by .dvc/html/build_offline_template.py from the npm packages
{versions}.

{licenses}
-->
{scripts}
<style>
body {{ font-family: sans-serif; }}
table {{ border-spacing: 15px; }}
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def _member(tarball: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{member} is not a file in the tarball")
        return extracted.read()


def _license(name: str, tarball: bytes) -> str:
    if name == "vega":
        return VEGA_LICENSE + "\n" + BSD_3_CLAUSE_TERMS
    return _member(tarball, "package/LICENSE").decode()


def _check_inlinable(name: str, code: str) -> None:
    """Inline code must not end its own script element nor carry a DVC placeholder."""
    if "</script" in code.lower() or "<!--" in code:
        raise SystemExit(f"{name}: its code holds '</script' or '<!--'; it cannot be inlined")
    found = [p for p in PLACEHOLDERS if p in code]
    if found:
        raise SystemExit(f"{name}: its code holds {found}, which DVC would substitute")


def build_page(tarballs: dict[str, bytes]) -> str:
    """The template's text from the three npm tarballs (name -> .tgz bytes)."""
    versions, licenses, scripts = [], [], []
    for name, version, member in PACKAGES:
        code = _member(tarballs[name], member).decode()
        _check_inlinable(name, code)
        digest = hashlib.sha256(code.encode()).hexdigest()
        versions.append(f"  {name}@{version} ({member.removeprefix('package/')}, sha256 {digest})")
        notice = _license(name, tarballs[name]).strip()
        if "--" in notice:
            raise SystemExit(f"{name}: its licence holds '--', which would end the comment")
        licenses.append(f"{name} {version}, BSD-3-Clause:\n\n{notice}")
        scripts.append(f'<script type="text/javascript">/* {name}@{version} */\n{code}\n</script>')
    return PAGE.format(
        versions="\n".join(versions),
        licenses="\n\n".join(licenses),
        scripts="\n".join(scripts),
        # kept for DVC to fill (the second is `dvc plots show --refresh`)
        plot_divs="{plot_divs}",
        refresh_tag="{refresh_tag}",
    )


def _npm_pack(folder: Path) -> dict[str, Path]:
    specs = [f"{name}@{version}" for name, version, _ in PACKAGES]
    subprocess.run(["npm", "pack", "--silent", *specs], cwd=folder, check=True)
    return {name: folder / f"{name}-{version}.tgz" for name, version, _ in PACKAGES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "tarballs", nargs="*", type=Path, help="vega, vega-lite, vega-embed .tgz (npm pack)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        if args.tarballs:
            paths = {p.name.rsplit("-", 1)[0]: p for p in args.tarballs}
        else:
            paths = _npm_pack(Path(scratch))
        wanted = {f"{name}-{version}.tgz" for name, version, _ in PACKAGES}
        given = {p.name for p in paths.values()}
        if given != wanted:
            raise SystemExit(f"expected tarballs {sorted(wanted)}, got {sorted(given)}")
        page = build_page({name: path.read_bytes() for name, path in paths.items()})
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT} ({len(page.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
