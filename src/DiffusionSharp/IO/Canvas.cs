namespace DiffusionSharp.IO;

/// <summary>A small 8-bit RGB drawing surface for plots: pixels, rectangles, lines and 5x7 bitmap text.</summary>
public sealed class Canvas
{
    /// <summary>The pixels (3 channels, 8 bits).</summary>
    public Image Image { get; }

    /// <summary>Width in pixels.</summary>
    public int Width => Image.Width;

    /// <summary>Height in pixels.</summary>
    public int Height => Image.Height;

    /// <summary>A canvas filled with <paramref name="background"/>.</summary>
    public Canvas(int width, int height, Rgb background)
    {
        Image = new Image(width, height, 3);
        FillRect(0, 0, width, height, background);
    }

    /// <summary>Sets one pixel; coordinates outside the canvas are ignored.</summary>
    public void Set(int x, int y, Rgb c)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int o = (y * Width + x) * 3;
        var d = Image.Data;
        d[o] = c.R; d[o + 1] = c.G; d[o + 2] = c.B;
    }

    /// <summary>The colour of one pixel.</summary>
    public Rgb Get(int x, int y)
    {
        int o = (y * Width + x) * 3;
        var d = Image.Data;
        return new Rgb(d[o], d[o + 1], d[o + 2]);
    }

    /// <summary>Fills the rectangle [x, x + w) x [y, y + h), clipped to the canvas.</summary>
    public void FillRect(int x, int y, int w, int h, Rgb c)
    {
        for (int yy = Math.Max(0, y); yy < Math.Min(Height, y + h); yy++)
            for (int xx = Math.Max(0, x); xx < Math.Min(Width, x + w); xx++) Set(xx, yy, c);
    }

    /// <summary>A line from (x0, y0) to (x1, y1) with Bresenham's algorithm, <paramref name="thickness"/> pixels wide.</summary>
    public void Line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1)
    {
        int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
        int dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
        int err = dx + dy;
        int lo = -(thickness - 1) / 2, hi = thickness / 2;
        while (true)
        {
            for (int a = lo; a <= hi; a++)
                for (int b = lo; b <= hi; b++) Set(x0 + a, y0 + b, c);
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) { err += dy; x0 += sx; }
            if (e2 <= dx) { err += dx; y0 += sy; }
        }
    }

    /// <summary>Draws <paramref name="text"/> with its top-left corner at (x, y); each glyph is 5x7 pixels times <paramref name="scale"/>, advancing 6.</summary>
    public void Text(int x, int y, string text, Rgb c, int scale = 1)
    {
        foreach (char ch in text)
        {
            var g = BitmapFont.Glyph(ch);
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                    if ((g[row] >> (BitmapFont.GlyphWidth - 1 - col) & 1) != 0)
                        FillRect(x + col * scale, y + row * scale, scale, scale, c);
            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>Draws <paramref name="text"/> rotated 90 degrees counter-clockwise (reading bottom to top), its bottom-left at (x, y).</summary>
    public void TextVertical(int x, int y, string text, Rgb c)
    {
        foreach (char ch in text)
        {
            var g = BitmapFont.Glyph(ch);
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                    if ((g[row] >> (BitmapFont.GlyphWidth - 1 - col) & 1) != 0) Set(x + row, y - col, c);
            y -= BitmapFont.Advance;
        }
    }
}

/// <summary>An 8-bit RGB colour.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    /// <summary>White.</summary>
    public static Rgb White => new(255, 255, 255);

    /// <summary>Black.</summary>
    public static Rgb Black => new(0, 0, 0);
}

/// <summary>A 5x7 pixel bitmap font (digits, upper-case letters, common punctuation; lower case is drawn upper case).</summary>
public static class BitmapFont
{
    /// <summary>Glyph width in pixels.</summary>
    public const int GlyphWidth = 5;

    /// <summary>Glyph height in pixels.</summary>
    public const int GlyphHeight = 7;

    /// <summary>Horizontal advance per character (glyph plus one pixel of spacing).</summary>
    public const int Advance = 6;

    /// <summary>Width in pixels of <paramref name="text"/> at scale 1.</summary>
    public static int Measure(string text) => text.Length == 0 ? 0 : text.Length * Advance - 1;

    private static readonly Dictionary<char, byte[]> Glyphs = Build();

    // Rows top to bottom; bit 4 is the leftmost pixel (the classic HD44780 5x7 character set).
    private static Dictionary<char, byte[]> Build()
    {
        var src = new (char C, string Rows)[]
        {
            ('0', "0E 11 13 15 19 11 0E"), ('1', "04 0C 04 04 04 04 0E"), ('2', "0E 11 01 02 04 08 1F"),
            ('3', "1F 02 04 02 01 11 0E"), ('4', "02 06 0A 12 1F 02 02"), ('5', "1F 10 1E 01 01 11 0E"),
            ('6', "06 08 10 1E 11 11 0E"), ('7', "1F 01 02 04 08 08 08"), ('8', "0E 11 11 0E 11 11 0E"),
            ('9', "0E 11 11 0F 01 02 0C"),
            ('A', "0E 11 11 11 1F 11 11"), ('B', "1E 11 11 1E 11 11 1E"), ('C', "0E 11 10 10 10 11 0E"),
            ('D', "1C 12 11 11 11 12 1C"), ('E', "1F 10 10 1E 10 10 1F"), ('F', "1F 10 10 1E 10 10 10"),
            ('G', "0E 11 10 17 11 11 0F"), ('H', "11 11 11 1F 11 11 11"), ('I', "0E 04 04 04 04 04 0E"),
            ('J', "07 02 02 02 02 12 0C"), ('K', "11 12 14 18 14 12 11"), ('L', "10 10 10 10 10 10 1F"),
            ('M', "11 1B 15 15 11 11 11"), ('N', "11 11 19 15 13 11 11"), ('O', "0E 11 11 11 11 11 0E"),
            ('P', "1E 11 11 1E 10 10 10"), ('Q', "0E 11 11 11 15 12 0D"), ('R', "1E 11 11 1E 14 12 11"),
            ('S', "0F 10 10 0E 01 01 1E"), ('T', "1F 04 04 04 04 04 04"), ('U', "11 11 11 11 11 11 0E"),
            ('V', "11 11 11 11 11 0A 04"), ('W', "11 11 11 15 15 15 0A"), ('X', "11 11 0A 04 0A 11 11"),
            ('Y', "11 11 11 0A 04 04 04"), ('Z', "1F 01 02 04 08 10 1F"),
            ('.', "00 00 00 00 00 0C 0C"), (',', "00 00 00 00 0C 04 08"), ('-', "00 00 00 1F 00 00 00"),
            ('+', "00 04 04 1F 04 04 00"), (':', "00 0C 0C 00 0C 0C 00"), ('/', "00 01 02 04 08 10 00"),
            ('(', "02 04 08 08 08 04 02"), (')', "08 04 02 02 02 04 08"), ('_', "00 00 00 00 00 00 1F"),
            ('=', "00 00 1F 00 1F 00 00"), ('%', "18 19 02 04 08 13 03"), (' ', "00 00 00 00 00 00 00"),
            ('?', "0E 11 01 02 04 00 04"), ('[', "0E 08 08 08 08 08 0E"), (']', "0E 02 02 02 02 02 0E"),
        };
        var d = new Dictionary<char, byte[]>();
        foreach (var (c, rows) in src) d[c] = rows.Split(' ').Select(h => Convert.ToByte(h, 16)).ToArray();
        return d;
    }

    /// <summary>The 7 row bitmasks of <paramref name="c"/> (unknown characters draw as '?').</summary>
    public static byte[] Glyph(char c) =>
        Glyphs.TryGetValue(char.ToUpperInvariant(c), out var g) ? g : Glyphs['?'];
}
