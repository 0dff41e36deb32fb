"""The training wing: one loop (rag.train.loop) and one module per thing trained.

reader (SQuAD windows), generator (SQuAD, seq2seq), retriever (the query tower, DPR), reranker (the
selection head on retrieved passages), joint (reader or generator with the query encoder, REALM/RAG).
Trainers never import each other; what they share lives with its data (rag.qa_data, rag.encoders,
rag.index_folder) or in the loop.
"""
