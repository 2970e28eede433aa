"""Re-reading the archive: chest CTs from the hospital's PACS read under a quality-review
grant (:mod:`preread.backfill.reader`), and the patients who may have been lost to follow-up
(:mod:`preread.backfill.worklist`, :mod:`preread.backfill.exports`)."""
