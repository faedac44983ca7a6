// pgx v5 against a running Tributary, with its defaults: the extended protocol, binary formats
// where pgx knows them, and its statement cache (each query prepared once, then reused).
//
//	go run . 6570   (from tests/clients/go)
//
// Exits non-zero, naming the failing check, on the first difference.
package main

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

func check(what string, actual, expected any) {
	if !reflect.DeepEqual(actual, expected) {
		fmt.Fprintf(os.Stderr, "%s: expected %#v, got %#v\n", what, expected, actual)
		os.Exit(1)
	}
}

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	ctx := context.Background()
	url := fmt.Sprintf("postgres://tester@127.0.0.1:%s/tributary?sslmode=disable", os.Args[1])
	conn, err := pgx.Connect(ctx, url)
	must(err, "connect")
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, `CREATE TABLE readings (i INT, b BIGINT, n NUMERIC(10, 2), d DOUBLE PRECISION,
		t TEXT, flag BOOLEAN, at TIMESTAMP, at_utc TIMESTAMPTZ, day DATE, span INTERVAL)`)
	must(err, "create table")
	_, err = conn.Exec(ctx, `CREATE MATERIALIZED VIEW per_text AS
		SELECT t, count(*) AS n, sum(b) AS total FROM readings GROUP BY t`)
	must(err, "create view")

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	span := pgtype.Interval{Days: 1, Microseconds: 2 * 3600 * 1000000, Valid: true}
	for i := 1; i <= 3; i++ {
		numeric := pgtype.Numeric{}
		must(numeric.Scan("12.50"), "numeric")
		tag, err := conn.Exec(ctx, "INSERT INTO readings VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
			int32(i), int64(9000000000+i), numeric, 2.5*float64(i), map[bool]string{true: "odd", false: "even"}[i%2 == 1],
			i > 1, at, at, day, span)
		must(err, "insert")
		check("insert count", tag.RowsAffected(), int64(1))
	}

	for round := 0; round < 3; round++ {
		var (
			i               int32
			b               int64
			n               pgtype.Numeric
			d               float64
			t               string
			flag            bool
			gotAt, gotAtUTC time.Time
			gotDay          time.Time
			gotSpan         pgtype.Interval
		)
		err := conn.QueryRow(ctx, "SELECT i, b, n, d, t, flag, at, at_utc, day, span FROM readings WHERE i = $1", int32(2)).
			Scan(&i, &b, &n, &d, &t, &flag, &gotAt, &gotAtUTC, &gotDay, &gotSpan)
		must(err, "select")
		check("int", i, int32(2))
		check("bigint", b, int64(9000000002))
		value, err := n.Float64Value()
		must(err, "numeric value")
		check("numeric", value.Float64, 12.5)
		check("double", d, 5.0)
		check("text", t, "even")
		check("bool", flag, true)
		check("timestamp", gotAt.Equal(at), true)
		check("timestamptz", gotAtUTC.Equal(at), true)
		check("date", gotDay.Format("2006-01-02"), "2026-01-02")
		check("interval", [2]int64{int64(gotSpan.Days), gotSpan.Microseconds}, [2]int64{1, 2 * 3600 * 1000000})
	}

	rows, err := conn.Query(ctx, "SELECT t, n, total FROM per_text WHERE n >= $1 ORDER BY t", int64(1))
	must(err, "view")
	type count struct {
		T     string
		N     int64
		Total string
	}
	var counts []count
	for rows.Next() {
		var c count
		var total pgtype.Numeric
		must(rows.Scan(&c.T, &c.N, &total), "scan view")
		text, err := total.Value()
		must(err, "total")
		c.Total = fmt.Sprint(text)
		counts = append(counts, c)
	}
	must(rows.Err(), "view rows")
	check("materialized view", counts, []count{{"even", 1, "9000000002"}, {"odd", 2, "18000000004"}})

	// Grafana's table list: the tables of the schemas on the search path.
	grafana := `SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
		WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog',
		'_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal',
		'_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental')
		AND table_type = 'BASE TABLE' AND quote_ident(table_schema) IN (
		SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
		FROM generate_series(
			array_lower(string_to_array(current_setting('search_path'),','),1),
			array_upper(string_to_array(current_setting('search_path'),','),1)
		) as i,
		string_to_array(current_setting('search_path'),',') s)
		ORDER BY 1`
	tableRows, err := conn.Query(ctx, grafana)
	must(err, "grafana table list")
	var tables []string
	for tableRows.Next() {
		var table string
		must(tableRows.Scan(&table), "scan table")
		tables = append(tables, table)
	}
	must(tableRows.Err(), "table rows")
	check("grafana table list", tables, []string{"readings"})
	fmt.Println("ok")
}
