"""Looking inside a trained recurrent network (Karpathy, Johnson and Fei-Fei 2015; LSTMVis).

    record      run a model over a text, keep every state, gate and prediction (NumPy arrays)
    features    label every character of a text (in a comment, bracket depth, ...)
    lexer       where a text's comments, strings and code are (what the features build on)
    search      score every unit against every feature; the LSTMVis select and match query
    saturation  how often each gate is shut (< 0.1) or wide open (> 0.9)
    ngram       a Kneser-Ney n-gram baseline and the error analysis against it
    render      colour units and predictions over text, as HTML and PNG
    report      all of it for one checkpoint and text: the `unrolled cells` command

Library functions return plain data (NumPy arrays, dicts, lists); drawing is kept in `render`.
"""
from unrolled.understand.features import FEATURES, compute as compute_features, register, regex_feature
from unrolled.understand.ngram import error_analysis, log_probs as ngram_log_probs
from unrolled.understand.record import Recording, load_recording, record, save_recording
from unrolled.understand.saturation import gate_saturation
from unrolled.understand.search import match, pearson, rank_units, roc_auc, select

__all__ = ["record", "Recording", "save_recording", "load_recording", "compute_features", "FEATURES",
           "register", "regex_feature", "rank_units", "roc_auc", "pearson", "select", "match",
           "gate_saturation", "ngram_log_probs", "error_analysis"]
