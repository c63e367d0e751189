"""The Ketch webhook ledger: Ketch Forwarder messages in, an incremental universe and the
erasure loop out.

    messages    parse and validate Forwarder messages; the spec's replies and errors
    store       the ledger's tables in the state store (events, changes, requests, callbacks)
    app         the ASGI app (Starlette) behind `reconcile ledger serve`
    serve       running the app under uvicorn
    sources     what the ledger adds to a run's universe: changed subjects and deletions
    erasures    after verify: deciding each open DeleteRequest's outcome
    callbacks   sending DeleteStatusEvents to the request's callback URLs, with retries
"""
