"""The stream format of SPEC §3: audio chunking, dMel, tokenizer, video patches, layout."""
