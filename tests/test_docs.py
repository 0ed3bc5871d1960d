from vpr.docs import END, START, registry_tables
from tests.test_config import ROOT


def test_readme_documents_every_registry_entry():
    readme = (ROOT / "README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == registry_tables().strip(), "run `python -m vpr.docs` to refresh the README tables"
