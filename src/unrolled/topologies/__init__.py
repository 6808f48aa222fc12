"""The five shapes of a sequence problem, each a recurrent layer between an input encoding and a head.

    one-to-one     x -> y                       OneToOne      (one step from the zero state)
    one-to-many    x -> y_1 .. y_T              OneToMany     (x sets h_0 and/or is fed at every step;
                                                               y_{t-1} is fed back as the next input)
    many-to-one    x_1 .. x_T -> y              ManyToOne     (head on the last state)
    many-to-many   x_1 .. x_T -> y_1 .. y_T     ManyToMany    (head on every step, aligned)
    many-to-many   x_1 .. x_S -> y_1 .. y_T     EncoderDecoder (encoder's last state starts the decoder)

Every topology composes the same parts: an input encoding (`dense` vectors, `onehot` or
`embedding` of token ids), one of `unrolled.RNN/LSTM/GRU` (any depth, width, dropout, and
`bidirectional` where the whole input is known in advance), and a head (`classify`: logits and
cross-entropy; `regress`: values and mean squared error).

Shapes (batch first): dense x (B, T, D), token ids (B, T); lengths (B,) give each row's real
length. Padding is never read: the layer packs (fast path) or masks (readable path), the
many-to-one head reads the state after each row's own last step, and losses average over real
steps only, so a padded batch gives the same outputs and loss as its rows one by one
(tests/test_topologies.py).

    parts.py      the encodings, the heads, the checks and masks of padded batches
    readers.py    OneToOne, ManyToOne, ManyToMany: read the input, answer from its states
    decoders.py   OneToMany, EncoderDecoder: each output fed back as the next input
"""
from unrolled.topologies.decoders import EncoderDecoder, OneToMany
from unrolled.topologies.parts import (ENCODINGS, HEADS, ClassificationHead, Dense, Embedding, OneHot,
                                       RegressionHead, check_lengths, check_token_ids, make_encoding,
                                       make_head, reduce_loss, step_mask, top_state)
from unrolled.topologies.readers import POOLS, ManyToMany, ManyToOne, OneToOne

__all__ = ["OneToOne", "OneToMany", "ManyToOne", "ManyToMany", "EncoderDecoder",
           "Dense", "OneHot", "Embedding", "ClassificationHead", "RegressionHead",
           "make_encoding", "make_head", "reduce_loss", "check_lengths", "check_token_ids", "step_mask",
           "top_state", "ENCODINGS", "HEADS", "POOLS"]
