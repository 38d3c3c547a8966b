"""Names and versions of the shard format."""

FORMAT = "hssl-shards"
VERSION = 1
INDEX = "index.json"
AUDIO_FORMATS = ("flac", "wav")
EXTENSIONS = ("png", "txt", "flac", "wav", "npz", "json")  # member order in a tar: json closes a sample
