package datagen

import "strconv"

// A dumpGen writes a MariaDB-style SQL dump: a header, then tables, each
// a DROP/CREATE block followed by one INSERT line per row. Ids count up
// and timestamps move forward, values vary; the result compresses about
// as well as real dumps do.
type dumpGen struct {
	r      *rng
	db     string
	began  bool
	table  int // index into dumpTables of the current table
	round  int // how many times the table list has been gone through
	rows   int // rows left in the current table; 0 starts the next
	id     int64
	ts     int64 // seconds since 1970, UTC
	day    int64
	dayStr []byte // "2023-04-05 " for day

	sensors [len(rooms) * len(sensorKinds)]int32 // tenths, for the states table
}

// prices are the unit prices of orders, in cents.
var prices = [...]int{
	99, 199, 249, 499, 599, 799, 999, 1299, 1499, 1999, 2499, 2999, 3499, 3999, 4999, 5999,
	6999, 7999, 8999, 9999, 12999, 14999, 19999, 24999, 29999, 34999, 39999, 49999, 59999, 79999, 99999, 149999,
}

// A dumpTable is one table's schema and row generator.
type dumpTable struct {
	name    string
	columns string
	minRows int
	maxRows int
	row     func(g *dumpGen, b []byte) []byte
}

var dumpTables = []dumpTable{
	{
		name: "users",
		columns: "  `id` bigint NOT NULL AUTO_INCREMENT,\n  `first_name` varchar(64) NOT NULL,\n" +
			"  `last_name` varchar(64) NOT NULL,\n  `email` varchar(255) NOT NULL,\n" +
			"  `created_at` datetime NOT NULL,\n  `is_admin` tinyint(1) NOT NULL DEFAULT 0,\n" +
			"  `quota_mb` int NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `email` (`email`)\n",
		minRows: 500, maxRows: 5000,
		row: func(g *dumpGen, b []byte) []byte {
			r := g.r
			first, last := pick(r, firstNames), pick(r, lastNames)
			b = append(b, '\'')
			b = append(b, first...)
			b = append(b, "','"...)
			b = append(b, last...)
			b = append(b, "','"...)
			b = append(b, first...)
			b = append(b, '.')
			b = append(b, last...)
			b = strconv.AppendInt(b, int64(r.intn(1000)), 10)
			b = append(b, '@')
			b = append(b, pick(r, domains)...)
			b = append(b, "','"...)
			b = g.appendTime(b)
			b = append(b, "',"...)
			b = strconv.AppendInt(b, int64(r.intn(30)/29), 10)
			b = append(b, ',')
			return strconv.AppendInt(b, int64(r.between(1, 64))*1024, 10)
		},
	},
	{
		name: "orders",
		columns: "  `id` bigint NOT NULL AUTO_INCREMENT,\n  `user_id` bigint NOT NULL,\n" +
			"  `created_at` datetime NOT NULL,\n  `amount` decimal(10,2) NOT NULL,\n" +
			"  `currency` char(3) NOT NULL,\n  `status` varchar(16) NOT NULL,\n" +
			"  `note` text,\n  PRIMARY KEY (`id`),\n  KEY `user_id` (`user_id`)\n",
		minRows: 20000, maxRows: 200000,
		row: func(g *dumpGen, b []byte) []byte {
			r := g.r
			b = strconv.AppendInt(b, int64(r.between(1, 5000)), 10)
			b = append(b, ",'"...)
			b = g.appendTime(b)
			b = append(b, "',"...)
			cents := prices[r.intn(len(prices))] * r.between(1, 3)
			b = strconv.AppendInt(b, int64(cents/100), 10)
			b = append(b, '.', byte('0'+cents/10%10), byte('0'+cents%10))
			b = append(b, ",'EUR','"...)
			b = append(b, pick(r, statuses)...)
			if !r.chance(4) {
				return append(b, "',NULL"...)
			}
			b = append(b, "','"...)
			for j := range r.between(1, 4) {
				if j > 0 {
					b = append(b, ' ')
				}
				b = append(b, pick(r, words)...)
			}
			return append(b, '\'')
		},
	},
	{
		name: "states",
		columns: "  `state_id` bigint NOT NULL AUTO_INCREMENT,\n  `entity_id` varchar(255) DEFAULT NULL,\n" +
			"  `state` varchar(255) DEFAULT NULL,\n  `last_updated` datetime(6) DEFAULT NULL,\n" +
			"  `old_state_id` bigint DEFAULT NULL,\n  `attributes_id` bigint DEFAULT NULL,\n" +
			"  PRIMARY KEY (`state_id`),\n  KEY `ix_states_entity_id_last_updated` (`entity_id`,`last_updated`)\n",
		minRows: 20000, maxRows: 200000,
		row: func(g *dumpGen, b []byte) []byte {
			r := g.r
			room, kind := r.intn(len(rooms)), r.intn(len(sensorKinds))
			b = append(b, "'sensor."...)
			b = append(b, rooms[room]...)
			b = append(b, '_')
			b = append(b, sensorKinds[kind]...)
			b = append(b, "','"...)
			v := &g.sensors[room*len(sensorKinds)+kind]
			*v = min(max(*v+int32(r.between(-3, 3)), 0), 3000) // a random walk per sensor
			b = strconv.AppendInt(b, int64(*v/10), 10)
			b = append(b, '.', byte('0'+*v%10))
			b = append(b, "','"...)
			b = g.appendTime(b)
			ms := r.intn(1000)
			b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), '0', '0', '0')
			b = append(b, "',"...)
			b = strconv.AppendInt(b, g.id-int64(r.between(1, 96)), 10)
			b = append(b, ',')
			return strconv.AppendInt(b, int64(room*len(sensorKinds)+kind+1), 10)
		},
	},
	{
		name: "events",
		columns: "  `event_id` bigint NOT NULL AUTO_INCREMENT,\n  `event_type` varchar(64) DEFAULT NULL,\n" +
			"  `event_data` text,\n  `time_fired` datetime DEFAULT NULL,\n  `context_id` char(26) DEFAULT NULL,\n" +
			"  PRIMARY KEY (`event_id`)\n",
		minRows: 20000, maxRows: 200000,
		row: func(g *dumpGen, b []byte) []byte {
			r := g.r
			b = append(b, "'"...)
			b = append(b, pick(r, []string{"state_changed", "call_service", "automation_triggered", "script_started"})...)
			b = append(b, "','{\"entity_id\":\"light."...)
			b = append(b, pick(r, rooms[:])...)
			b = append(b, "\",\"brightness\":"...)
			b = strconv.AppendInt(b, int64(r.intn(256)), 10)
			b = append(b, ",\"on\":"...)
			if r.chance(2) {
				b = append(b, "true"...)
			} else {
				b = append(b, "false"...)
			}
			b = append(b, "}','"...)
			b = g.appendTime(b)
			b = append(b, "','01"...)
			const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
			x := r.uint64()
			for range 12 {
				b = append(b, alphabet[x&31])
				x >>= 5
			}
			return append(b, '\'')
		},
	},
}

const dumpHeader = "-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)\n--\n" +
	"-- Host: localhost    Database: "

const dumpSettings = "\n-- ------------------------------------------------------\n" +
	"-- Server version\t10.11.6-MariaDB-0+deb12u1\n\n" +
	"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n" +
	"/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n" +
	"/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n" +
	"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n"

// newDumpGen returns a dump of database db. Ids start at firstID and
// time at a pseudo-random moment of 2021.
func newDumpGen(seed uint64, db string, firstID int64) *dumpGen {
	r := newRNG(seed)
	g := &dumpGen{
		r: r, db: db, id: firstID, table: -1, day: -1,
		ts: 1609459200 + r.int63n(365*86400), // 2021-01-01 + up to a year
	}
	for i := range g.sensors {
		g.sensors[i] = int32(r.intn(3001))
	}
	return g
}

// line appends the next line, or the next table's header block, to b.
func (g *dumpGen) line(b []byte) []byte {
	if !g.began {
		g.began = true
		b = append(b, dumpHeader...)
		b = append(b, g.db...)
		return append(b, dumpSettings...)
	}
	if g.rows == 0 {
		return g.nextTable(b)
	}
	g.rows--
	g.id++
	g.ts += int64(g.r.intn(40))
	t := &dumpTables[g.table]
	b = append(b, "INSERT INTO `"...)
	b = g.tableName(b)
	b = append(b, "` VALUES ("...)
	b = strconv.AppendInt(b, g.id, 10)
	b = append(b, ',')
	b = t.row(g, b)
	return append(b, ");\n"...)
}

func (g *dumpGen) nextTable(b []byte) []byte {
	if g.table >= 0 {
		b = append(b, "/*!40000 ALTER TABLE `"...)
		b = g.tableName(b)
		b = append(b, "` ENABLE KEYS */;\nUNLOCK TABLES;\n"...)
	}
	g.table++
	if g.table == len(dumpTables) {
		g.table = 0
		g.round++
	}
	t := &dumpTables[g.table]
	g.rows = g.r.between(t.minRows, t.maxRows)
	b = append(b, "\n--\n-- Table structure for table `"...)
	b = g.tableName(b)
	b = append(b, "`\n--\n\nDROP TABLE IF EXISTS `"...)
	b = g.tableName(b)
	b = append(b, "`;\nCREATE TABLE `"...)
	b = g.tableName(b)
	b = append(b, "` (\n"...)
	b = append(b, t.columns...)
	b = append(b, ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;\n\n--\n-- Dumping data for table `"...)
	b = g.tableName(b)
	b = append(b, "`\n--\n\nLOCK TABLES `"...)
	b = g.tableName(b)
	b = append(b, "` WRITE;\n/*!40000 ALTER TABLE `"...)
	b = g.tableName(b)
	return append(b, "` DISABLE KEYS */;\n"...)
}

func (g *dumpGen) tableName(b []byte) []byte {
	b = append(b, dumpTables[g.table].name...)
	if g.round > 0 {
		b = append(b, "_archive"...)
		b = strconv.AppendInt(b, int64(g.round), 10)
	}
	return b
}

// appendTime appends g.ts as "2006-01-02 15:04:05".
func (g *dumpGen) appendTime(b []byte) []byte {
	if d := g.ts / 86400; d != g.day {
		g.day = d
		y, m, dd := civil(d)
		g.dayStr = strconv.AppendInt(g.dayStr[:0], y, 10)
		g.dayStr = append(g.dayStr, '-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10), ' ')
	}
	b = append(b, g.dayStr...)
	s := g.ts % 86400
	h, mi, sec := s/3600, s/60%60, s%60
	return append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+sec/10), byte('0'+sec%10))
}

// civil converts days since 1970-01-01 (not negative) to a proleptic
// Gregorian date (Howard Hinnant's civil_from_days).
func civil(days int64) (year, month, day int64) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	year = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = doy - (153*mp+2)/5 + 1
	month = mp + 3
	if mp >= 10 {
		month = mp - 9
	}
	if month <= 2 {
		year++
	}
	return year, month, day
}
