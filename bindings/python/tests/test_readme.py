"""The README's Python example runs as written (from the repository root)."""

import os
import re

from conftest import REPO


def test_the_readme_example_runs(tmp_path, monkeypatch):
    text = open(os.path.join(REPO, "README.md")).read()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    # The example's store goes to a temporary directory; its relative fixture path is
    # the repository's.
    code = code.replace('"./scry-data"', repr(str(tmp_path / "scry-data")))
    monkeypatch.chdir(REPO)
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    df = env["df"]
    assert df["spans"].sum() > 0 and "service_name" in df.columns
