"""python scripts/unpack_savedmodel.py VERSION_DIR OUT_DIR: a float16 export's model(s) as member_<i>.keras
(`seg4reg_tf.export.unpack`), e.g. to fine-tune a shipped version with train.init_weights."""
import sys

from seg4reg_tf.export.unpack import unpack_savedmodel

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for path in unpack_savedmodel(sys.argv[1], sys.argv[2]):
        print(path)
