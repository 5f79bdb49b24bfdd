"""Operations: health, ``fanout doctor``, drift checks, the sinks' status, the demo order."""
