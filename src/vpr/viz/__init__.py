"""Pictures and pages: prediction pictures, charts, maps and the offline HTML report."""
