"""Rebuild dvc_plots.html: the page `dvc plots diff` fills (.dvc/config: plots.html_template), with vega,
vega-lite and vega-embed inlined from their npm packages, so its charts draw offline (DVC's default page loads
them from a CDN). The versions are those DVC's default page names (dvc_render.vega.VegaRenderer.SCRIPTS); each
package's licence (BSD-3-Clause) and the packages its build bundles are written next to its script.

    python reports/templates/vendor_vega.py      # needs npm and its registry; checks each tarball's sha512
"""
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = (  # name, version, file of the package, npm's integrity of the tarball
    ("vega", "5.20.2", "build/vega.min.js",
     "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    ("vega-lite", "5.2.0", "build/vega-lite.min.js",
     "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
    ("vega-embed", "6.18.2", "build/vega-embed.min.js",
     "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="),
)
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- DVC's plots page with its chart libraries inlined, so it draws offline: written by
         reports/templates/vendor_vega.py (do not edit by hand). -->
%s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def _member(tar: tarfile.TarFile, path: str) -> str:
    return tar.extractfile(f"package/{path}").read().decode("utf-8")


def script_block(name: str, version: str, path: str, integrity: str, tarball: bytes) -> str:
    """The package's licence and bundled dependencies as a comment, then its script inline."""
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != integrity:
        raise SystemExit(f"error: {name}@{version}: the tarball's {digest} is not the recorded {integrity}")
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        licence, code = _member(tar, "LICENSE"), _member(tar, path)
        deps = json.loads(_member(tar, "package.json")).get("dependencies", {})
    code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "", code)      # no map file comes with the page
    for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if bad in code:
            raise SystemExit(f"error: {name}@{version}/{path} contains {bad!r}; it cannot be inlined")
    bundled = ", ".join(f"{k}@{v}" for k, v in sorted(deps.items()))
    note = (f"{name}@{version} ({path} of the npm package, {integrity}); licence BSD-3-Clause:\n\n"
            f"{licence.strip()}\n\nThe package's dependencies, which its build bundles where it uses them: "
            f"{bundled or 'none'} (each under its own licence, see the package on npm).")
    return f"    <!--\n{note.replace('--', '- -')}\n    -->\n    <script>{code.strip()}</script>"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version, _, _ in PACKAGES]
        subprocess.run(["npm", "pack", "--silent", *specs], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        blocks = []
        for name, version, path, integrity in PACKAGES:
            with open(os.path.join(tmp, f"{name}-{version}.tgz"), "rb") as fh:
                blocks.append(script_block(name, version, path, integrity, fh.read()))
    out = os.path.join(HERE, "dvc_plots.html")
    with open(out + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(PAGE.replace("%s", "\n".join(blocks), 1))
    os.replace(out + ".tmp", out)
    print(f"{out}: {os.path.getsize(out) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
