"""Reports from stored results: Table 1, the paper's figures and a browsable HTML page (``rwku report``)."""
