"""Names and versions of the shard format."""

FORMAT = "hssl-shards"
VERSION = 2  # 2: members sorted (webdataset TarWriter), listed in the .json; 1: json last
INDEX = "index.json"
AUDIO_FORMATS = ("flac", "wav")
EXTENSIONS = ("png", "txt", "flac", "wav", "npz", "json")
