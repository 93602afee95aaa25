// Text for one-line error messages: numbers, shapes, and values that came from the user, capped so
// that a hostile field (a 64 KiB string) cannot flood a log. Host only; shared by the TensorRT
// plugins and the ONNX Runtime ops.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace nvfp4
{

// Longest part of a user-given string echoed in a message.
constexpr size_t kMaxEcho = 64;

inline std::string toString(float v)
{
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%.9g", static_cast<double>(v));
    return buffer;
}

// `text` with non-printable bytes as \xNN (and `quote` escaped), cut at `limit` bytes with the full
// length said.
inline std::string printable(std::string const& text, size_t limit = kMaxEcho, char quote = '"')
{
    std::string out;
    for (size_t i = 0; i < text.size() && i < limit; ++i)
    {
        unsigned char const c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7f && c != static_cast<unsigned char>(quote) && c != '\\')
        {
            out += static_cast<char>(c);
        }
        else
        {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
            out += escaped;
        }
    }
    if (text.size() > limit)
    {
        out += "... (" + std::to_string(text.size()) + " bytes)";
    }
    return out;
}

// `text` in double quotes, made printable and capped as above.
inline std::string quoted(std::string const& text, size_t limit = kMaxEcho)
{
    return "\"" + printable(text, limit) + "\"";
}

// "[2, ?, 64]": a shape, unknown (negative) dimensions as '?'.
inline std::string shapeToString(std::vector<int64_t> const& dims)
{
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i)
    {
        s += (i ? ", " : "") + (dims[i] < 0 ? std::string("?") : std::to_string(dims[i]));
    }
    return s + "]";
}

} // namespace nvfp4
