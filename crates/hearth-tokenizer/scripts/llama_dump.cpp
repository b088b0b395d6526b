// Reference dump from llama.cpp, for differential testing against examples/parity_dump.rs:
// the vocabulary's BOS/EOS/add_bos, each token's piece (token_to_piece, special = false) and
// EOG flag, and for each NUL-separated input string, with parse_special off then on, the
// ids (llama_tokenize, add_special = false) and the detokenized bytes (llama_detokenize,
// remove_special = unparse_special = false).
//
// Build against a llama.cpp checkout (the llama-cpp-python source package vendors one):
//   cmake -S llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
//         -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
//         -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF
//   cmake --build build --target llama -j
//   g++ -O2 -std=c++17 -Illama.cpp/include -Illama.cpp/ggml/include llama_dump.cpp -o llama_dump \
//       build/src/libllama.a build/ggml/src/libggml.a build/ggml/src/libggml-cpu.a \
//       build/ggml/src/libggml-base.a -lpthread -ldl -lm
//   llama_dump VOCAB.gguf INPUTS > theirs.txt
#include "llama.h"
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

static void hex(const char * p, int n) { for (int i = 0; i < n; i++) printf("%02x", (unsigned char) p[i]); }

int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: h MODEL INPUTS\n"); return 1; }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    printf("V %d bos %d eos %d add_bos %d\n", n_vocab, llama_vocab_bos(vocab), llama_vocab_eos(vocab), (int) llama_vocab_get_add_bos(vocab));
    std::vector<char> buf(1 << 20);
    for (int id = 0; id < n_vocab; id++) {
        int n = llama_token_to_piece(vocab, id, buf.data(), buf.size(), 0, false);
        printf("P %d %d ", id, (int) llama_vocab_is_eog(vocab, id));
        hex(buf.data(), n > 0 ? n : 0);
        printf("\n");
    }
    std::ifstream f(argv[2], std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    std::vector<llama_token> toks(1 << 20);
    while (pos < all.size()) {
        size_t end = all.find('\0', pos);
        if (end == std::string::npos) end = all.size();
        std::string s = all.substr(pos, end - pos);
        pos = end + 1;
        for (int ps = 0; ps < 2; ps++) {
            int n = llama_tokenize(vocab, s.data(), s.size(), toks.data(), toks.size(), false, ps == 1);
            printf("T%d", ps);
            for (int i = 0; i < n; i++) printf(" %d", toks[i]);
            printf("\n");
            int m = llama_detokenize(vocab, toks.data(), n, buf.data(), buf.size(), false, false);
            printf("D%d ", ps);
            hex(buf.data(), m > 0 ? m : 0);
            printf("\n");
        }
    }
    llama_model_free(model);
    return 0;
}
