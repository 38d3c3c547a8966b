"""On-device galleries: ``EmbeddingIndex`` (exact or HNSW search over unit embeddings with ids and
metadata) and the folder helpers that fill it and keep it in step with a folder."""

from edge_runtime.index.files import SyncReport, file_stamp, index_files, scan_media, sync_folder
from edge_runtime.index.gallery import DTYPES, FORMAT, HNSW_FROM, KINDS, VERSION, EmbeddingIndex, Hit
from edge_runtime.index.stores import HnswParams

__all__ = ["DTYPES", "FORMAT", "HNSW_FROM", "KINDS", "VERSION", "EmbeddingIndex", "Hit", "HnswParams", "SyncReport",
           "file_stamp", "index_files", "scan_media", "sync_folder"]
