"""Scan-trained recurrences (minGRU, minLSTM): gates from the input alone, trained over the whole sequence at once."""
