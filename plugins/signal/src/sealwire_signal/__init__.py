"""Signal (X3DH / PQXDH + Double Ratchet) mailbox binding for Sealwire."""
