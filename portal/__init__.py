"""The units' door (``planflow.portal``): personal signed links, the self-evaluation form in the
browser, receipts. A thin web layer: it reads and writes through the engine's public functions
and emits the same Prefect events as the operators' flows; it never touches the store's tables."""
