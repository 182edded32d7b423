# Finds SentencePiece (Debian: libsentencepiece-dev) by its header and libraries, without
# pkg-config, so that an unpacked copy found through CMAKE_PREFIX_PATH works as well as an
# installed one. Defines SentencePiece_FOUND and the imported target SentencePiece::SentencePiece
# (the processor and the trainer library, as sentencepiece.pc links them).
find_path(SentencePiece_INCLUDE_DIR sentencepiece_processor.h)
find_library(SentencePiece_LIBRARY sentencepiece)
find_library(SentencePiece_TRAIN_LIBRARY sentencepiece_train)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(SentencePiece DEFAULT_MSG
                                  SentencePiece_LIBRARY SentencePiece_TRAIN_LIBRARY SentencePiece_INCLUDE_DIR)
if(SentencePiece_FOUND AND NOT TARGET SentencePiece::SentencePiece)
  add_library(SentencePiece::SentencePiece INTERFACE IMPORTED)
  set_target_properties(SentencePiece::SentencePiece PROPERTIES
                        INTERFACE_INCLUDE_DIRECTORIES "${SentencePiece_INCLUDE_DIR}"
                        INTERFACE_LINK_LIBRARIES "${SentencePiece_LIBRARY};${SentencePiece_TRAIN_LIBRARY};Threads::Threads")
endif()
