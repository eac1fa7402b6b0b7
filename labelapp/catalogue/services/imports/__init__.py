"""Product imports: stream a JSON lines or CSV feed into Product rows, with a per-row report (ImportRowIssue).

The same entry points serve the management commands, a Celery task, the admin or an API:

    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source="myntra",   # runs
                            options={"mapping": mapping.to_dict(), "images_dir": "/data/images"})
    import_run_execute(import_run_id=run.id)        # execute; or products_import(import_run=run, path=..., ...)

Rows are streamed (one line in memory at a time, upserts in batches of settings.IMPORT_BATCH_SIZE), so
memory stays flat whatever the file's size. A row is never silently lost: it is created, updated, or
recorded as an ImportRowIssue (rejected / repaired / warning) with its line number, reason and raw text.

One job a module, lowest first: `runs` (an ImportRun's lifecycle, its row issues and report), `files`
(bytes to decoded lines), `mapping` (which input field feeds which product field), `fetch` (outbound HTTP to
public addresses only), `images` (fetch, check and store product images), `drafts` (a record to normalised
product values), `readers` (lines to records), `writer` (batches of drafts to Product rows), `products` (the
product import), `execute` (runs a queued ImportRun of any kind). This package only documents: import each
name from its module.
"""
