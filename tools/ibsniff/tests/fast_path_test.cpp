// The speed-ups of the -T fields path (bench/ibsniff/) against the plain ways they replace: the
// packet's occurrence index against a scan of its fields, FieldsLine against render_occurrences
// per column, the memory-mapped pcap reader against libpcap's own reading, and the CLMUL CRC-32
// against zlib.
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "frames.hpp"
#include "ibsniff/crc.hpp"
#include "ibsniff/decoder.hpp"
#include "ibsniff/fields.hpp"
#include "ibsniff/reader.hpp"
#include "ibsniff/render.hpp"
#include "ibsniff/session.hpp"

namespace ibsniff {
namespace {

namespace fs = std::filesystem;
using test::Bytes;

std::vector<fs::path> captures() {
  std::vector<fs::path> out;
  for (const char* dir : {IBSNIFF_REPO_CAPTURES, IBSNIFF_PUBLIC_CAPTURES}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".pcap") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path temp_file(const std::string& tag) {
  return fs::temp_directory_path() /
         ("ibsniff_fast_" + tag + "_" + std::to_string(getpid()) + ".pcap");
}

// The occurrences of `id` by a scan of the fields.
std::vector<std::uint32_t> scan(const Packet& p, FieldId id) {
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < p.fields.size(); ++i)
    if (p.fields[i].id == id) out.push_back(static_cast<std::uint32_t>(i));
  return out;
}

std::vector<std::uint32_t> indexed(const Packet& p, FieldId id) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t i = p.first_of(id); i != Packet::kNoField; i = p.next_of(i)) out.push_back(i);
  return out;
}

TEST(IbsniffFastPath, OccurrenceIndexFollowsTheFields) {
  Packet p;
  EXPECT_EQ(p.first_of(FieldId::bth_opcode), Packet::kNoField);  // no fields yet
  auto add = [&](FieldId id, std::uint64_t v) { p.fields.push_back(Field{id, 0, 0, v}); };
  add(FieldId::frame_number, 1);
  add(FieldId::reserved, 2);
  add(FieldId::bth_opcode, 3);
  add(FieldId::reserved, 4);
  for (FieldId id : {FieldId::frame_number, FieldId::reserved, FieldId::bth_opcode, FieldId::aeth})
    EXPECT_EQ(indexed(p, id), scan(p, id));
  add(FieldId::reserved, 5);  // the packet grows after a lookup: the index follows
  add(FieldId::aeth, 6);
  for (FieldId id : {FieldId::reserved, FieldId::aeth}) EXPECT_EQ(indexed(p, id), scan(p, id));
  p.clear();  // a new packet: nothing of the old one is found
  EXPECT_EQ(p.first_of(FieldId::reserved), Packet::kNoField);
  add(FieldId::aeth, 7);
  EXPECT_EQ(indexed(p, FieldId::aeth), std::vector<std::uint32_t>{0});
  EXPECT_EQ(p.first_of(FieldId::bth_opcode), Packet::kNoField);
  const Packet copy = p;  // a copy answers like the original
  EXPECT_EQ(indexed(copy, FieldId::aeth), std::vector<std::uint32_t>{0});
}

// Every column of every captured packet: the FieldsLine line equals render_occurrences per
// column, for every occurrence mode, with a column asked for twice and both separators.
TEST(IbsniffFastPath, FieldsLineRendersLikeRenderOccurrences) {
  std::vector<FieldId> columns;
  for (std::size_t i = 0; i < field_table().size(); ++i) columns.push_back(static_cast<FieldId>(i));
  columns.push_back(FieldId::reserved);  // twice
  columns.push_back(FieldId::frame_number);
  const auto files = captures();
  ASSERT_FALSE(files.empty());
  std::size_t lines = 0;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    for (int occurrence : {0, 1, 2, -1}) {
      for (const char* sep : {"\t", ", "}) {
        std::string error;
        auto reader = Reader::open(file.string(), &error);
        ASSERT_TRUE(reader) << error;
        Session session;
        TimeRef ref;
        FieldsLine line(columns, sep, occurrence);
        Packet p;
        while (reader->next(p, &error)) {
          session.process(p);
          ref.observe(p);
          std::string expected;
          for (std::size_t c = 0; c < columns.size(); ++c) {
            if (c > 0) expected += sep;
            render_occurrences(p, columns[c], ref, occurrence, expected);
          }
          expected += '\n';
          std::string got = "prefix|";
          line.append(p, ref, got);
          ASSERT_EQ(got, "prefix|" + expected) << "frame " << p.number;
          ++lines;
        }
      }
    }
  }
  EXPECT_GT(lines, 1000U);
}

// -T fields decodes only what its columns need (Packet::want; no SDP layer without an SDP column,
// no CRC check without its verdict column): every capture, rendered for sets of columns with and
// without SDP and CRC-verdict fields, prints exactly what a full decode prints.
TEST(IbsniffFastPath, DecodingOnlyTheColumnsPrintsWhatAFullDecodePrints) {
  auto id = [](const char* name) { return *field_by_name(name); };
  std::vector<std::vector<FieldId>> sets = {
      {id("frame.number"), id("ip.src"), id("udp.srcport"), id("infiniband.bth.opcode"),
       id("infiniband.bth.psn"), id("infiniband.aeth.syndrome"), id("infiniband.reth.va"),
       id("infiniband.mad.attributeid"), id("infiniband.cm.req.serviceid"),
       id("infiniband.invariant.crc")},
      {id("infiniband_sdp.bsdh.mid"), id("infiniband_sdp.bsdh.bufs"), id("ibsniff.sdp.conn"),
       id("frame.len")},
      {id("ibsniff.icrc.bad"), id("ibsniff.vcrc.bad"), id("frame.cap_len"), id("frame.len")},
      {id("infiniband.lrh.dlid"), id("infiniband.grh.sgid"), id("ibsniff.payload"),
       id("infiniband.cm.req.private"), id("frame.time_relative")},
  };
  std::mt19937 rng(7);  // and random sets of 6 of all the fields
  for (int k = 0; k < 12; ++k) {
    std::vector<FieldId> set;
    for (int j = 0; j < 6; ++j) set.push_back(static_cast<FieldId>(rng() % field_table().size()));
    sets.push_back(set);
  }
  const auto files = captures();
  ASSERT_FALSE(files.empty());
  std::size_t lines = 0, sdp_lines = 0;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    for (const auto& columns : sets) {
      FieldSet want;
      for (FieldId c : columns) want.add(c);
      std::string error;
      auto full_reader = Reader::open(file.string(), &error);
      auto lean_reader = Reader::open(file.string(), &error);
      ASSERT_TRUE(full_reader && lean_reader) << error;
      Session full_session, lean_session;
      lean_session.set_sdp(want.any_sdp());
      TimeRef ref;
      FieldsLine line(columns, "\t", 0);
      Packet full, lean;
      lean.want = want.data();
      while (full_reader->next(full, &error)) {
        ASSERT_TRUE(lean_reader->next(lean, &error));
        full_session.process(full);
        lean_session.process(lean);
        ref.observe(full);
        std::string a, b;
        line.append(full, ref, a);
        line.append(lean, ref, b);
        ASSERT_EQ(b, a) << "frame " << full.number;
        EXPECT_LE(lean.fields.size(), full.fields.size());
        ++lines;
        if (full.sdp_mid >= 0 && want.any_sdp()) ++sdp_lines;
      }
      EXPECT_FALSE(lean_reader->next(lean, &error));
    }
  }
  EXPECT_GT(lines, 1000U);
  EXPECT_GT(sdp_lines, 100U);  // the SDP columns were exercised
}

struct Record {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
  std::uint32_t wire_len = 0;
  Bytes data;
  bool operator==(const Record&) const = default;
};

// The records as libpcap reads them (nanosecond timestamps), and its error at the end if any.
std::vector<Record> libpcap_records(const fs::path& file, std::string* error) {
  std::vector<Record> out;
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* pc =
      pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, err.data());
  if (pc == nullptr) {
    *error = err.data();
    return out;
  }
  pcap_pkthdr* h = nullptr;
  const u_char* d = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(pc, &h, &d)) == 1)
    out.push_back(Record{h->ts.tv_sec, static_cast<std::uint32_t>(h->ts.tv_usec), h->len,
                         Bytes(d, d + h->caplen)});
  *error = rc == PCAP_ERROR ? pcap_geterr(pc) : "";
  pcap_close(pc);
  return out;
}

std::vector<Record> reader_records(const fs::path& file, std::string* error) {
  std::vector<Record> out;
  auto reader = Reader::open(file.string(), error);
  if (!reader) return out;
  Packet p;
  error->clear();
  while (reader->next(p, error)) {
    Record r{p.ts_sec, p.ts_nsec, p.wire_len, Bytes(p.data.begin(), p.data.end())};
    if (p.linktype == kLinkErf) r.wire_len = 0;  // the decoder read time and length from ERF
    out.push_back(std::move(r));
  }
  return out;
}

void expect_same_records(const fs::path& file) {
  SCOPED_TRACE(file.string());
  std::string e1, e2;
  const auto want = libpcap_records(file, &e1);
  const auto got = reader_records(file, &e2);
  EXPECT_EQ(e2, e1);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].wire_len == 0)  // ERF: the bytes only
      EXPECT_EQ(got[i].data, want[i].data) << "record " << i;
    else
      EXPECT_TRUE(got[i] == want[i]) << "record " << i;
  }
}

using Records = std::vector<std::pair<std::array<std::uint32_t, 4>, Bytes>>;

// A classic pcap file (Ethernet), written by hand: the file header, then each record (seconds,
// fraction, captured length, wire length; data) as given; in the other byte order if `swap`.
void write_pcap(const fs::path& file, std::uint32_t magic, std::uint32_t snaplen,
                const Records& records, bool swap = false) {
  std::ofstream out(file, std::ios::binary);
  auto put = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) {
      const int shift = 8 * (swap ? n - 1 - i : i);  // little-endian, or big-endian if swapped
      out.put(static_cast<char>((v >> shift) & 0xff));
    }
  };
  put(magic, 4);
  put(2, 2);  // version 2.4
  put(4, 2);
  put(0, 8);  // time zone, significant figures
  put(snaplen, 4);
  put(1, 4);  // Ethernet
  for (const auto& [hdr, data] : records) {
    for (std::uint32_t v : hdr) put(v, 4);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
  }
}

TEST(IbsniffFastPath, MappedReaderReadsWhatLibpcapReads) {
  for (const auto& file : captures()) expect_same_records(file);
  const Bytes frame = test::rocev2(test::BthSpec{}, {}, test::byte_pattern(100));
  const auto len = static_cast<std::uint32_t>(frame.size());
  Bytes longer = frame;
  longer.resize(300, 0xab);
  // Nanosecond timestamps; a record longer than the snapshot length (libpcap cuts it, from
  // there on libpcap reads); a timestamp fraction out of range.
  const fs::path f = temp_file("records");
  write_pcap(f, 0xa1b23c4d, 200,
             {{{1700000000, 123456789, len, len}, frame},
              {{1700000001, 5, len, len}, frame},
              {{1700000002, 6, 300, 300}, longer},
              {{1700000003, 7, len, len}, frame}});
  expect_same_records(f);
  write_pcap(f, 0xa1b2c3d4, 65535,
             {{{1700000000, 999999, len, len}, frame},
              {{1700000001, 2000000, len, len}, frame},
              {{1700000002, 0, len, len}, frame}});
  expect_same_records(f);
  // Cut in a record header, and in a record's data: libpcap's error after the whole records.
  write_pcap(f, 0xa1b2c3d4, 65535,
             {{{1700000000, 1, len, len}, frame}, {{1700000001, 2, len, len}, frame}});
  const auto size = fs::file_size(f);
  for (std::uintmax_t cut : {std::uintmax_t{10}, std::uintmax_t{len} + 8}) {
    fs::resize_file(f, size - cut);
    expect_same_records(f);
  }
  // Files in the other byte order are left to libpcap.
  write_pcap(f, 0xa1b2c3d4, 65535,
             {{{1700000000, 1, len, len}, frame}, {{1700000001, 2, len, len}, frame}}, true);
  expect_same_records(f);
  fs::remove(f);
}

TEST(IbsniffFastPath, Crc32MatchesZlib) {
  std::mt19937 rng(7);
  Bytes buf(4096 + 64);
  for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
  for (std::size_t len = 0; len < 600; ++len) {
    for (std::size_t off = 0; off < 16; off += 5) {
      const std::uint32_t init = len % 3 == 0 ? 0 : static_cast<std::uint32_t>(rng());
      const auto want =
          static_cast<std::uint32_t>(::crc32(init, buf.data() + off, static_cast<uInt>(len)));
      ASSERT_EQ(crc32_update(init, {buf.data() + off, len}), want) << len << " at " << off;
    }
  }
  EXPECT_EQ(crc32_update(0, buf), static_cast<std::uint32_t>(::crc32(0, buf.data(), 4160)));
}

// ICRCs of every payload length around the CLMUL block sizes: good as built (frames.cpp computes
// them bitwise), bad with one payload byte changed.
TEST(IbsniffFastPath, IcrcOfEveryLengthAroundTheBlocks) {
  for (std::size_t n = 0; n < 400; n += (n < 200 ? 1 : 7)) {
    test::BthSpec s;
    const Bytes payload = test::byte_pattern(n);
    for (int kind = 0; kind < 4; ++kind) {
      Bytes frame;
      int link = kLinkEthernet;
      if (kind == 0) frame = test::rocev2(s, {}, payload);
      if (kind == 1) frame = test::rocev2(s, {}, payload, true);
      if (kind == 2) frame = test::rocev1(s, {}, payload);
      if (kind == 3) {
        frame = test::native(s, {}, payload, n % 2 == 0);
        link = kLinkInfiniband;
      }
      for (bool damage : {false, true}) {
        Bytes f = frame;
        if (damage && n > 0) f[f.size() - (kind == 3 ? 7 : 5)] ^= 0x40;  // the last payload byte
        Packet p;
        p.linktype = link;
        p.data = f;
        p.wire_len = static_cast<std::uint32_t>(f.size());
        decode(p);
        const bool bad = damage && n > 0;
        EXPECT_EQ(p.icrc, bad ? CrcStatus::Bad : CrcStatus::Good)
            << "kind " << kind << ", payload " << n;
      }
    }
  }
}

}  // namespace
}  // namespace ibsniff
