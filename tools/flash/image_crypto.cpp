#include "image_crypto.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace cm::flash {

namespace {

constexpr const char* kSecretKind = "cm-ed25519-secret-key";
constexpr const char* kPublicKind = "cm-ed25519-public-key";

// "kind\nHEX\n" -> bytes; errors name the file.
Expected<std::vector<std::uint8_t>, std::string> read_key_text(const std::string& path, std::string& kind) {
    std::ifstream in(path);
    if (!in) return Unexpected{fmt::format("cannot read key file {}: {}", path, std::strerror(errno))};
    std::string hex;
    if (!std::getline(in, kind) || !std::getline(in, hex))
        return Unexpected{fmt::format("{} is not a cm key file (want two lines: kind, hex)", path)};
    std::vector<std::uint8_t> bytes(hex.size() / 2);
    std::size_t len = 0;
    if (sodium_hex2bin(bytes.data(), bytes.size(), hex.c_str(), hex.size(), nullptr, &len, nullptr) != 0 ||
        len * 2 != hex.size())
        return Unexpected{fmt::format("{}: the key is not hex", path)};
    bytes.resize(len);
    return bytes;
}

}  // namespace

bool crypto_init() {
    if (sodium_init() < 0) {
        std::fputs("libsodium could not start\n", stderr);
        return false;
    }
    return true;
}

SigningKey generate_key() {
    SigningKey key;
    crypto_sign_ed25519_keypair(key.public_key.data(), key.secret.data());
    return key;
}

Expected<bool, std::string> write_key_files(const SigningKey& key, const std::string& secret_path,
                                            const std::string& public_path, bool overwrite) {
    auto write = [&](const std::string& path, const char* kind, std::span<const std::uint8_t> bytes,
                     mode_t mode) -> Expected<bool, std::string> {
        const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
        const int fd = ::open(path.c_str(), flags, mode);
        if (fd < 0)
            return Unexpected{fmt::format("cannot create {}: {}{}", path, std::strerror(errno),
                                          errno == EEXIST ? " (use --force to replace it)" : "")};
        std::string text = fmt::format("{}\n{}\n", kind, boot::to_hex(bytes));
        const bool good = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                          ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
        sodium_memzero(text.data(), text.size());
        ::close(fd);
        if (!good) return Unexpected{fmt::format("cannot write {}: {}", path, std::strerror(errno))};
        return true;
    };
    if (auto r = write(secret_path, kSecretKind, key.secret, 0600); !r) return r;
    return write(public_path, kPublicKind, key.public_key, 0644);
}

Expected<SigningKey, std::string> read_secret_key(const std::string& path) {
    std::string kind;
    auto bytes = read_key_text(path, kind);
    if (!bytes) return Unexpected{bytes.error()};
    if (kind != kSecretKind || bytes->size() != 64)
        return Unexpected{fmt::format("{} is not a cm secret key (first line {}, 64 bytes)", path, kSecretKind)};
    SigningKey key;
    std::copy(bytes->begin(), bytes->end(), key.secret.begin());
    crypto_sign_ed25519_sk_to_pk(key.public_key.data(), key.secret.data());
    sodium_memzero(bytes->data(), bytes->size());
    return key;
}

Expected<PublicKey, std::string> read_public_key(const std::string& path) {
    std::string kind;
    auto bytes = read_key_text(path, kind);
    if (!bytes) return Unexpected{bytes.error()};
    PublicKey pk{};
    if (kind == kPublicKind && bytes->size() == 32) {
        std::copy(bytes->begin(), bytes->end(), pk.begin());
        return pk;
    }
    if (kind == kSecretKind && bytes->size() == 64) {
        crypto_sign_ed25519_sk_to_pk(pk.data(), bytes->data());
        sodium_memzero(bytes->data(), bytes->size());
        return pk;
    }
    return Unexpected{fmt::format("{} is not a cm key file (first line {} or {})", path, kPublicKind, kSecretKind)};
}

std::array<std::uint8_t, 8> key_id(const PublicKey& key) {
    const auto digest = sha256(key);
    std::array<std::uint8_t, 8> id{};
    std::copy_n(digest.begin(), id.size(), id.begin());
    return id;
}

std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> bytes) {
    std::array<std::uint8_t, 32> digest{};
    crypto_hash_sha256(digest.data(), bytes.data(), bytes.size());
    return digest;
}

std::vector<std::uint8_t> sign_image(boot::ImageHeader& header, std::span<const std::uint8_t> payload,
                                     const SigningKey& key) {
    header.payload_sha256 = sha256(payload);
    header.key_id = key_id(key.public_key);
    header.signature.fill(0);
    auto head = boot::encode_image_header(header);
    crypto_sign_state state;
    crypto_sign_init(&state);
    crypto_sign_update(&state, head.data(), boot::kImageSignedHeaderBytes);
    crypto_sign_update(&state, payload.data(), payload.size());
    crypto_sign_final_create(&state, header.signature.data(), nullptr, key.secret.data());
    head = boot::encode_image_header(header);
    std::vector<std::uint8_t> image(head.size() + payload.size());
    std::memcpy(image.data(), head.data(), head.size());
    if (!payload.empty()) std::memcpy(image.data() + head.size(), payload.data(), payload.size());
    return image;
}

Expected<Verification, std::string> verify_image(std::span<const std::uint8_t> image, const PublicKey* key) {
    auto header = boot::parse_image_header(image);
    if (!header) return Unexpected{header.error()};
    Verification v;
    v.header = *header;
    if (auto whole = boot::parse_image(image); !whole) {
        v.problem = whole.error();
        return v;
    }
    const auto payload = image.subspan(boot::kImageHeaderSize);
    v.hash_checked = true;
    v.hash_ok = sha256(payload) == v.header.payload_sha256;
    if (!v.hash_ok) {
        v.problem = "corrupt payload: its SHA-256 differs from the header's";
        return v;
    }
    if (key == nullptr) return v;
    v.signature_checked = true;
    crypto_sign_state state;
    crypto_sign_init(&state);
    crypto_sign_update(&state, image.data(), boot::kImageSignedHeaderBytes);
    crypto_sign_update(&state, payload.data(), payload.size());
    v.signature_ok = crypto_sign_final_verify(&state, v.header.signature.data(), key->data()) == 0;
    if (!v.signature_ok) {
        v.problem = v.header.key_id == key_id(*key)
                        ? "bad signature (the header or payload changed after signing, or the signature is damaged)"
                        : fmt::format("bad signature: signed by key {}, not by the trusted key {}",
                                      boot::to_hex(v.header.key_id), boot::to_hex(key_id(*key)));
    }
    return v;
}

Expected<std::vector<std::uint8_t>, std::string> read_file(const std::string& path, std::uint64_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Unexpected{fmt::format("cannot read {}: {}", path, std::strerror(errno))};
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uint64_t>(in.tellg());
    if (size > max_bytes) return Unexpected{fmt::format("{} is too large ({} bytes, at most {})", path, size, max_bytes)};
    in.seekg(0);
    std::vector<std::uint8_t> bytes(size);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
        return Unexpected{fmt::format("cannot read {}", path)};
    return bytes;
}

}  // namespace cm::flash
