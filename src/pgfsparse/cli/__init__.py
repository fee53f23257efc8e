"""The console scripts: pgf-train, pgf-report, pgf-export, pgf-collect."""
